"""Command line: `python -m core archs | summary NAME|timm:NAME|FILE.onnx | zoo | weights list|prefetch NAME... |
train [...] | lab autoencoder|unet|siamese|depth [...] | lecture list|prepare|export DIR | pretrain [...]`.

Everything the Architecture Explorer shows, and every run the Transfer Learning Studio starts,
is available here, for scripts and for checking the dashboard's numbers without a browser.
Bad options end with one line on stderr and exit code 2, before any data is loaded. `train` and
`lab` with `--runner local|ray` go through the dashboard's job runner instead of this process and
print the same lines, so a lecturer can check a Ray cluster from a terminal.
"""

from __future__ import annotations

import argparse
import csv
import sys
from typing import TYPE_CHECKING, Any, Callable

from core import registry
from core.analysis import AnalysisError, summarize
from core.formatting import fmt_bytes, fmt_int, fmt_macs, fmt_shape
from core.spec import OptionError, UnknownArchitectureError

if TYPE_CHECKING:
    from core.train.events import Event
    from core.train.jobs import JobSpec


def _parse_opts(pairs: list[str]) -> dict[str, str]:
    opts = {}
    for pair in pairs:
        if "=" not in pair:
            raise OptionError(f"--opt expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


def _table(summary) -> str:
    head = f"{'#':>4}  {'layer':34} {'type':18} {'output':>14} {'params':>13} {'MACs':>15} {'rf':>6} {'jump':>5}"
    rows = [head, "-" * len(head)]
    for r in summary.layers:
        rows.append(f"{r.index:>4}  {r.name[:34]:34} {r.type[:18]:18} {fmt_shape(r.output_shape):>14} "
                    f"{fmt_int(r.params):>13} {fmt_int(r.macs):>15} {r.rf:>6} {r.jump:>5}")
    t = summary.totals
    rows += ["-" * len(head),
             f"params {fmt_int(t.params)} (trainable {fmt_int(t.trainable_params)}), "
             f"MACs {fmt_int(t.macs)} = {fmt_macs(t.macs)} (FLOPs = 2 x MACs = {fmt_int(t.flops)}), "
             f"forward activations {fmt_bytes(t.forward_bytes)} per image (fp32), "
             f"weights {fmt_bytes(t.param_bytes)}"]
    rows += [f"warning: {w}" for w in summary.warnings]
    return "\n".join(rows)


def _summary(name: str, input_size: list[int] | None, opts: dict[str, str]):
    """The engine's summary of a registry name, a `timm:` name or an ONNX file (a path ending in .onnx)."""
    if name.lower().endswith(".onnx"):
        from pathlib import Path

        from core.onnx_import import OnnxError, read_onnx, summarize_onnx

        if opts:
            raise OptionError("an ONNX file has no options")
        path = Path(name)
        try:
            net = read_onnx(path.read_bytes(), path.name)
        except OSError as e:
            raise AnalysisError(f"cannot read {name}: {e.strerror or e}") from None
        except OnnxError as e:
            raise AnalysisError(str(e)) from None
        return summarize_onnx(net, tuple(input_size) if input_size else None)
    return summarize(name, input_size, opts)


def _train(a: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from core.train import transfer
    from core.train.data import DatasetError, load_dataset
    from core.train.events import Cancelled, Diverged, Epoch, Event, Note, RunInfo, as_dict

    try:
        zip_bytes = Path(a.zip).read_bytes() if a.zip else None
        if (a.dataset == "zip") != bool(a.zip):
            raise ValueError("--zip FILE goes with --dataset zip (and only with it)")
        cfg = transfer.TrainConfig(
            dataset=a.dataset, arch=a.arch, weights=a.weights, scenario=a.scenario, epochs=a.epochs,
            batch_size=a.batch_size, lr=a.lr, lr_body=a.lr_body, unfreeze_from=a.unfreeze_from,
            labels_per_class=a.labels_per_class, val_fraction=a.val_fraction, image_size=a.image_size,
            shapes_classes=a.shapes_classes, shapes_per_class=a.shapes_per_class, classifier=a.classifier,
            augment=a.augment, seed=a.seed)
        transfer.check_input(cfg)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def show(e: Event) -> None:
        if a.json and isinstance(e, Epoch):
            print(json.dumps(as_dict(e)), flush=True)
        elif isinstance(e, Epoch):
            speed = f"  {e.images_per_s:.0f} img/s" if e.images_per_s else ""
            print(f"epoch {e.epoch}: train loss {e.train_loss:.4f}  val loss {e.val_loss:.4f}  "
                  f"val acc {e.metrics['acc']:.2%}{speed}", flush=True)
        elif isinstance(e, RunInfo) and not a.json:
            print(f"{cfg.arch}, {e.weights.sentence()}; {e.n_train} train / {e.n_val} val images; "
                  f"{e.trainable:,} trainable, {e.frozen:,} frozen parameters", flush=True)
        elif isinstance(e, Note) and not a.json:
            print(e.message, flush=True)

    if a.runner:
        from core.train.jobs import JobSpec

        rc, results = _through_runner(a.runner, JobSpec("train", cfg, payload=zip_bytes), a.device, show)
        if rc:
            return rc
        s = results.summary
        val_acc, val_loss, seconds, weights = s["val_acc"], s["val_loss"], s["seconds"], results.weights.kind
    else:
        try:
            data = load_dataset(cfg.dataset, cfg.image_size, shapes_classes=cfg.shapes_classes,
                                shapes_per_class=cfg.shapes_per_class, seed=cfg.seed, zip_bytes=zip_bytes)
            res = transfer.fit(cfg, data, a.device, on_event=show)
        except (DatasetError, Diverged, Cancelled, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        val_acc, val_loss, seconds, weights = res.val_acc, res.val_loss, res.seconds, res.weights.kind
    final = {"type": "final", "val_acc": val_acc, "val_loss": val_loss, "seconds": round(seconds, 2), "weights": weights}
    print(json.dumps(final) if a.json else f"done: validation accuracy {val_acc:.2%} in {seconds:.1f} s")
    return 0


def _through_runner(backend: str, spec: JobSpec, device: str, show: Callable[[Event], None]) -> tuple[int, Any]:
    """Submits `spec` through the job runner `backend` ("local" or "ray"), shows its events as they
    arrive, and returns the exit code (0 done, 2 otherwise, with the job's sentence on stderr; 130
    after Ctrl-C, which cancels the job) and the job's results."""
    import os
    import tempfile
    import time

    from core.train.events import ACTIVE_STATES
    from core.train.jobs import JobError, make_runner

    # The local backend in a private folder: a runner in this process must not mark a running
    # server's jobs in the shared store as interrupted. A Ray cluster's board is shared by design.
    tmp = tempfile.TemporaryDirectory(prefix="convnetlab-cli-") if backend == "local" else None
    try:
        runner = make_runner(backend, device=device, **({"root": tmp.name} if tmp else {}))
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, None
    try:
        jid = runner.submit(f"cli-{os.getpid()}", spec)
        seen = 0
        try:
            while True:
                st = runner.status(jid)  # read first: once a job has ended, all its events are in
                new = runner.events(jid, seen)
                for e in new:
                    show(e)
                seen += len(new)
                if st.state not in ACTIVE_STATES:
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            runner.cancel(jid)
            print("error: cancelled", file=sys.stderr)
            return 130, None
        if st.state != "done":
            print(f"error: {st.message}", file=sys.stderr)
            return 2, None
        return 0, runner.results(jid)
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, None
    finally:
        runner.shutdown()
        if tmp is not None:
            tmp.cleanup()


def _weights(cmd: str, names: list[str]) -> int:
    from core import weights

    if cmd == "list":
        for s in weights.weights_status():
            print(f"{s.arch:22} {s.weights:38} {'cached' if s.cached else 'not cached':10} {s.file_mb:7.1f} MB  {s.path}")
        return 0
    rc = 0
    for name in names:
        try:
            registry.get(name)
            print(weights.prefetch(name))
        except (UnknownArchitectureError, weights.WeightsError) as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 2
    return rc


def _zoo(write: bool, as_csv: bool) -> int:
    from core import zoo

    if write:
        zoo.write_rf_file()
        print(f"wrote {zoo.RF_FILE}", file=sys.stderr)
    rows = zoo.zoo_rows()
    if as_csv:
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        return 0
    print(f"{'model':22} {'family':22} {'year':>4} {'params':>13} {'GMACs':>7} {'acc@1':>6} {'rf':>7}")
    for r in rows:
        print(f"{r['name']:22} {r['family']:22} {r['year']:>4} {fmt_int(r['params']):>13} {r['gmacs']:>7.3f} "
              f"{r['acc1']:>6.2f} {r['rf'] if r['rf'] is not None else '-':>7}")
    return 0


def _train_options(tp: argparse.ArgumentParser) -> None:
    from core.train.data import BUILTIN_SETS, TORCHVISION_SETS
    from core.train.transfer import ENCODERS, SCENARIO_KEYS, TrainConfig

    d = TrainConfig()
    tp.add_argument("--dataset", default=d.dataset, choices=[*BUILTIN_SETS, *TORCHVISION_SETS],
                    help="torchvision sets download on first use (need a network)")
    tp.add_argument("--zip", metavar="FILE", help="with --dataset zip: a zip of class folders")
    tp.add_argument("--arch", default=d.arch, choices=ENCODERS)
    tp.add_argument("--weights", default=d.weights, choices=["imagenet", "starter", "random"],
                    help="imagenet: torchvision's weights when cached (else random, said so); "
                         "starter: ConvNet Lab's ResNet-18")
    tp.add_argument("--scenario", default=d.scenario, choices=SCENARIO_KEYS)
    tp.add_argument("--classifier", default=d.classifier, choices=["logreg", "knn"], help="scenario 3")
    tp.add_argument("--unfreeze-from", default=d.unfreeze_from, metavar="STAGE",
                    help="fine-tuning: first stage to train (default: all)")
    tp.add_argument("--lr-body", type=float, default=d.lr_body, help="fine-tuning: peak LR of the first stage")
    tp.add_argument("--epochs", type=int, default=d.epochs)
    tp.add_argument("--batch-size", type=int, default=d.batch_size)
    tp.add_argument("--lr", type=float, default=d.lr, help="peak LR of the one-cycle schedule")
    tp.add_argument("--labels-per-class", type=int, default=d.labels_per_class, help="0 = all")
    tp.add_argument("--val-fraction", type=float, default=d.val_fraction)
    tp.add_argument("--image-size", type=int, default=d.image_size)
    tp.add_argument("--shapes-classes", type=int, default=d.shapes_classes)
    tp.add_argument("--shapes-per-class", type=int, default=d.shapes_per_class)
    tp.add_argument("--augment", action="store_true", help="random shifts")
    tp.add_argument("--seed", type=int, default=d.seed)
    tp.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    tp.add_argument("--json", action="store_true", help="print one JSON object per epoch and a final one")
    _runner_option(tp)


def _runner_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", choices=["local", "ray"],
                   help="run it as a job of the dashboard's runner (ray: the cluster at $RAY_ADDRESS) and "
                        "follow its events; default: in this process")


def _lab_options(lp: argparse.ArgumentParser) -> None:
    """One sub-command per lab task, with an option per field of its Config."""
    import importlib

    from core.lab.common import TASKS, TITLES, options

    tasks = lp.add_subparsers(dest="task", required=True)
    for task, module in TASKS.items():
        try:
            cfg_cls = importlib.import_module(module).Config
        except ModuleNotFoundError:
            continue  # a task not built yet
        tp = tasks.add_parser(task, help=TITLES[task])
        for f in options(cfg_cls):
            flag = "--" + f.name.replace("_", "-")
            if isinstance(f.default, bool):
                tp.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            else:
                knob = cfg_cls.KNOBS.get(f.name)
                text_choices = knob.choices if knob and isinstance(f.default, str) else None  # numbers: the Config says
                tp.add_argument(flag, type=type(f.default), default=f.default, help=knob.label if knob else None,
                                choices=text_choices)
        tp.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
        tp.add_argument("--json", action="store_true", help="one JSON object per epoch, the final metrics last")
        _runner_option(tp)


def _lab(a: argparse.Namespace) -> int:
    import json
    import tempfile

    from core.lab.common import options, run_headless, task_module
    from core.train.events import Cancelled, Diverged, Epoch, Event, Note, as_dict

    module = task_module(a.task)
    try:
        cfg = module.Config(**{f.name: getattr(a, f.name) for f in options(module.Config)})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def show(e: Event) -> None:
        if isinstance(e, Epoch):
            if a.json:
                print(json.dumps(as_dict(e)), flush=True)
            else:
                metrics = "  ".join(f"{k} {v:.4f}" for k, v in e.metrics.items())
                print(f"{e.series + ' ' if e.series else ''}epoch {e.epoch}: train loss {e.train_loss:.4f}  "
                      f"val loss {e.val_loss:.4f}  {metrics}", flush=True)
        elif isinstance(e, Note) and not a.json:
            print(e.message, flush=True)

    if a.runner:
        from core.train.jobs import JobSpec

        rc, results = _through_runner(a.runner, JobSpec("lab", cfg), a.device, show)
        if rc:
            return rc
        final = results.final
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="convnetlab-lab-") as tmp:
                final, _ = run_headless(cfg, tmp, a.device, show)
        except (Diverged, Cancelled, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(final) if a.json else module.summary(final))
    return 0


def _lecture(a: argparse.Namespace) -> int:
    """`lecture list | prepare | export DIR`: the lecture path from a terminal."""
    from core.lecture import stops

    if a.lcmd == "list":
        for k, s in enumerate(stops.STOPS):
            print(f"{k + 1:>3}  {s.slug:24} {s.section:18} {s.component.kind:15} {s.title}")
        return 0
    if a.lcmd == "export":
        from core.lecture.handout import export

        index = export(a.dir, a.base_url, lambda f, m: print(f"{f:4.0%} {m}", file=sys.stderr, flush=True))
        print(index)
        return 0
    unknown = [s for s in a.only or () if s not in stops.slugs()]
    if unknown:
        print(f"error: unknown stop {unknown[0]!r}; `python -m core lecture list` names them", file=sys.stderr)
        return 2
    import os
    import re
    import tempfile
    import time

    from core.lecture.prepare import lecture_dir, prefetch_command, prepare
    from core.train.jobs import JobError, make_runner

    # The local backend in a private folder: a runner in this process must not mark a running
    # server's jobs in the shared store as interrupted. The finished runs are copied into
    # lecture_dir(), which the server reads.
    tmp = tempfile.TemporaryDirectory(prefix="convnetlab-lecture-") if a.runner == "local" else None
    if tmp is not None:
        # This command's own runner, not a server others share: no cap on one run's time unless
        # asked (CONVNETLAB_MAX_RUN_MIN; a server's default of 15 minutes stops a default run on a
        # busy CPU).
        os.environ.setdefault("CONVNETLAB_MAX_RUN_MIN", "0")
    try:
        runner = make_runner(a.runner, device=a.device, **({"root": tmp.name} if tmp else {}))
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = {"at": 0.0, "what": ""}

    def progress(fraction: float, message: str) -> None:
        """A line when the work changes (the message without its numbers), else one every 10 s."""
        what = re.sub(r"[0-9]+", "#", message)
        if what != shown["what"] or time.time() - shown["at"] > 10:
            print(f"{fraction:4.0%} {message}", flush=True)
            shown.update(at=time.time(), what=what)

    try:
        report = prepare(runner, a.runs, progress, tuple(a.only) if a.only else None, retrain=a.retrain)
    except KeyboardInterrupt:
        print("error: interrupted; what was prepared so far is kept", file=sys.stderr)
        return 130
    finally:
        runner.shutdown()
        if tmp is not None:
            tmp.cleanup()
    for name, r in report.runs.items():
        print(f"run {name:12} {r['state']:9} {r['seconds']:7.1f} s  {r['message']}")
    slow = max(report.panels.items(), key=lambda kv: kv[1], default=None)
    print(f"prepared {len(report.panels)} stops in {report.seconds:.0f} s ({report.profile} run settings) into "
          f"{lecture_dir()}" + (f"; slowest stop {slow[0]} {slow[1]:.1f} s" if slow else ""))
    for m in report.missing:
        print(f"missing: ImageNet weights for {m.arch}; {len(m.stops)} stop(s) use {m.fallback} weights instead: "
              f"{', '.join(m.stops)}")
    if report.missing:
        print(f"to fetch them ahead of class (needs a network): {prefetch_command(report.missing)}")
    failed = [n for n, r in report.runs.items() if r["state"] != "done"]
    if failed:
        print(f"error: runs that did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core", description="ConvNet Lab from the command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("archs", help="list the registered architectures")
    sp = sub.add_parser("summary", help="layer-by-layer table of one architecture")
    sp.add_argument("name", help="a registry name (python -m core archs), timm:NAME (any architecture timm "
                                 "builds) or a path to an .onnx file")
    sp.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"))
    sp.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="architecture option, e.g. --opt stride_in=1x1 (repeatable)")
    fmt = sp.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    zp = sub.add_parser("zoo", help="torchvision's classification models: metadata and receptive fields")
    zp.add_argument("--write", action="store_true", help="recompute the receptive fields into assets/zoo_rf.json")
    zp.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    wp = sub.add_parser("weights", help="ImageNet weights in torchvision's cache")
    wsub = wp.add_subparsers(dest="wcmd", required=True)
    wsub.add_parser("list", help="which registry entries have weights, and which are cached")
    pf = wsub.add_parser("prefetch", help="download weights ahead of an offline lecture")
    pf.add_argument("names", nargs="+")
    tp = sub.add_parser("train", help="a transfer-learning run, headless (every option the Studio offers)")
    _train_options(tp)
    lp = sub.add_parser("lab", help="the lecture's last third, trained headless: autoencoder, unet, siamese, depth")
    _lab_options(lp)
    lc = sub.add_parser("lecture", help="the lecture path: list its stops, prepare them ahead of class, "
                                        "export the handout")
    lsub = lc.add_subparsers(dest="lcmd", required=True)
    lsub.add_parser("list", help="every stop: slug, section, component, the slide's title")
    lpp = lsub.add_parser("prepare", help="compute every stop and train every training stop's run (minutes), "
                                          "kept in the results directory")
    lpp.add_argument("--runs", choices=["default", "tiny"], default=None,
                     help="run settings: the pages' defaults, or tiny ones (seconds; tests); default: "
                          "$CONVNETLAB_LECTURE_RUNS, else default")
    lpp.add_argument("--retrain", action="store_true", help="train every run again (default: keep finished "
                                                            "runs with the same settings)")
    lpp.add_argument("--only", nargs="+", metavar="SLUG", help="prepare these stops only")
    lpp.add_argument("--runner", choices=["local", "ray"], default="local",
                     help="the job runner the runs go through (ray: the cluster at $RAY_ADDRESS)")
    lpp.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: the runner's choice")
    lpe = lsub.add_parser("export", help="write the static HTML handout (DIR/index.html, plotly.min.js, img/)")
    lpe.add_argument("dir")
    lpe.add_argument("--base-url", default="http://localhost:8501",
                     help="the live dashboard the handout links back to")
    pp = sub.add_parser("pretrain", help="pre-train the starter encoder on formula-driven images")
    pp.add_argument("--classes", type=int, default=256)
    pp.add_argument("--per-class", type=int, default=40)
    pp.add_argument("--epochs", type=int, default=10)
    pp.add_argument("--size", type=int, default=32)
    pp.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    if a.cmd == "pretrain":
        from core.train import pretrain

        cfg = pretrain.PretrainConfig(classes=a.classes, per_class=a.per_class, epochs=a.epochs, size=a.size,
                                      seed=a.seed)
        model, metrics = pretrain.pretrain(cfg, on_epoch=lambda e: print(
            f"epoch {e.epoch}: loss {e.train_loss:.3f}, fractal val acc {e.metrics['acc']:.1%}, "
            f"{e.elapsed:.0f} s", flush=True))
        pretrain.save_starter(model, cfg, metrics)
        print(f"wrote {pretrain.STARTER} and {pretrain.STARTER_CARD}")
        return 0

    if a.cmd in ("train", "lab") and a.device == "cuda":
        from core.device import describe_device

        if describe_device().kind != "cuda":
            print("error: --device cuda, but this machine has no CUDA GPU that PyTorch can use; "
                  "run with --device cpu", file=sys.stderr)
            return 2

    if a.cmd == "lecture":
        return _lecture(a)

    if a.cmd == "train":
        return _train(a)

    if a.cmd == "lab":
        return _lab(a)

    if a.cmd == "weights":
        return _weights(a.wcmd, getattr(a, "names", []))

    if a.cmd == "zoo":
        return _zoo(a.write, a.csv)

    if a.cmd == "archs":
        for n in registry.names():
            s = registry.get(n)
            opts = ", ".join(f"{k}={v.default}" for k, v in s.options.items())
            print(f"{n:22} {s.title:42} {'x'.join(map(str, s.input_size)):12} {opts}")
        return 0
    try:
        summary = _summary(a.name, a.input_size, _parse_opts(a.opt))
    except (UnknownArchitectureError, OptionError, AnalysisError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(summary.to_json())
    elif a.csv:
        sys.stdout.write(summary.to_csv())
    else:
        print(_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
