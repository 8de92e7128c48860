"""The lecture path: its stops against the slides' order, its links against the pages that read
them, its numbers against independent computations and the core functions the full pages use,
preparing through the real job runner (tiny runs only), the handout, the CLI and the page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core import registry
from core.analysis import summarize
from core.design import DESIGN_TABS, separable_cost
from core.lab.common import link_values, task_module
from core.lecture import panels, stops
from core.lecture.panels import Callout, Chart, Metrics, Table, Text, walk
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every stop without a run prepared once, in a results folder of this module's own: the tests
    below read the panels the page and the handout read."""
    from core.lecture import prepare as prep
    from tests.lecturefakes import InlineRunner

    folder = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONVNETLAB_RESULTS", str(folder))
        prep.prepare(InlineRunner(folder / "inline"), "tiny", only=tuple(s.slug for s in stops.STOPS if not s.training))
        yield folder


def _panel(slug: str):
    """A stop's prepared panel (the `prepared` fixture computed it with `stop_panel`)."""
    from core.lecture.prepare import load_panel

    panel = load_panel(stops.get(slug))
    assert panel is not None, slug
    return panel


def _text(panel) -> str:
    """Every word and number a panel shows (metrics, text, callouts, tables)."""
    out = []
    for b in walk(panel):
        if isinstance(b, Text):
            out.append(b.md)
        elif isinstance(b, Callout):
            out.append(b.text)
        elif isinstance(b, Metrics):
            out += [f"{label} {value}" for label, value, _ in b.items]
        elif isinstance(b, Table):
            out.append(b.frame.to_csv(index=False))
    return "\n".join(out)


def _numel(arch: str, **opts) -> int:
    """Parameters counted on a real model built on the meta device: independent of the engine."""
    spec = registry.get(arch)
    with torch.device("meta"):
        model = spec.builder(**spec.resolve_options(opts))
    return sum(p.numel() for p in model.parameters())


def _macs(module: nn.Module, *shape: int) -> int:
    """Multiply-accumulates by PyTorch's FLOP counter (FLOPs / 2)."""
    with FlopCounterMode(display=False) as fc:
        module(torch.zeros(1, *shape))
    return fc.get_total_flops() // 2


# --- the stops as data ------------------------------------------------------------------------------------

def test_the_stops_follow_the_lectures_sections_in_order():
    sections = [s.section for s in stops.STOPS]
    order = list(dict.fromkeys(sections))
    assert order == list(stops.SECTIONS)                       # every section, in the slides' order
    assert sections == sorted(sections, key=order.index)       # no section comes back later
    assert 25 <= len(stops.STOPS) <= 35
    for s in stops.STOPS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.slug), s.slug
        assert s.title and s.notes and 40 < len(s.point) < 400, s.slug
    assert stops.get("inception-module").section == "GoogLeNet"
    with pytest.raises(KeyError):
        stops.get("no-such-stop")


def test_the_briefs_points_are_on_the_path():
    """The lecture's points this path promises, each at a stop of its section."""
    want = {"Transfer learning": ["transfer-scenario-1", "transfer-scenario-2", "transfer-scenario-3",
                                  "fastai-recipe", "transfer-is-the-norm"],
            "Model Zoo": ["model-zoo"], "AlexNet": ["alexnet-parameters"], "ZFNet": ["zfnet-visualising"],
            "VGG": ["vgg-small-filters", "vgg-memory"],
            "GoogLeNet": ["one-by-one", "inception-module", "global-average-pooling"],
            "ResNet": ["degradation", "residual-block"], "MobileNet": ["depthwise-separable"],
            "Autoencoder": ["autoencoder", "transposed-convolution"], "U-Net": ["unet"],
            "Siamese networks": ["siamese-one-shot"]}
    for section, slugs in want.items():
        for slug in slugs:
            assert stops.get(slug).section == section


def test_every_component_has_a_builder_and_every_training_stop_its_runs():
    plans = stops.run_plans("tiny")
    for s in stops.STOPS:
        if s.training:
            assert s.component.kwargs["view"] in ("studio", "fastai", "compare", "autoencoder", "unet", "siamese",
                                                  "depth"), s.slug
            assert all(name in plans for name in s.runs), s.slug
        else:
            assert s.component.kind in panels.BUILDERS, s.slug
    assert {s.slug for s in stops.STOPS if s.live} == {
        "transfer-scenario-1", "transfer-scenario-2", "transfer-scenario-3", "fastai-recipe", "degradation",
        "autoencoder", "unet", "siamese-one-shot"}


def test_the_run_plans_are_the_pages_defaults_and_tiny_ones_are_small():
    from core.lab import autoencoder, depth, siamese, unet

    d, t = stops.run_plans("default"), stops.run_plans("tiny")
    assert d["autoencoder"].config == autoencoder.Config() and d["unet"].config == unet.Config()
    assert d["siamese"].config == siamese.Config() and d["depth"].config == depth.Config()
    assert d["scenario-1"].config.epochs == 5 and d["scenario-1"].config.dataset == "digits"
    assert d["fine-tune"].config.augment and not d["scenario-1"].config.augment
    assert d["lr-finder"].config == d["fine-tune"].config and d["lr-finder"].kind == "lr_find"
    for name, plan in t.items():
        cfg = plan.config
        assert getattr(cfg, "epochs", 1) == 1, name
    with pytest.raises(ValueError):
        stops.run_plans("huge")


# --- links to the full pages ------------------------------------------------------------------------------

def _query(link: str) -> tuple[str, dict[str, str]]:
    u = urlparse(link)
    return u.path, {k: v[0] for k, v in parse_qs(u.query).items()}


@pytest.mark.parametrize("stop", stops.STOPS, ids=lambda s: s.slug)
def test_every_full_page_link_holds_a_state_its_page_reads(stop):
    plans = stops.run_plans("default")
    path, q = _query(stops.full_link(stop, plans))
    assert path in ("/explorer", "/design", "/lab", "/transfer", "/zoo", "/inside"), path
    if path == "/explorer":
        spec = registry.get(q["arch"])
        opts = {k[2:]: spec.options[k[2:]].parse(k[2:], v) for k, v in q.items() if k.startswith("o_")}
        size = tuple(int(x) for x in q["size"].split("x")) if "size" in q else None
        layers = summarize(q["arch"], size, opts).layers
        if "layer" in q:
            assert 0 <= int(q["layer"]) < len(layers)
    elif path == "/design":
        assert q["tab"] in DESIGN_TABS
    elif path == "/lab":
        module = task_module(q.pop("task"))
        link = link_values(module.Config, q)
        assert not link.ignored
        if stop.training:
            assert module.Config(**link.values) == plans[stop.runs[-1]].config   # the run's exact settings
    elif path == "/transfer" and not stop.link:
        assert q["scenario"] == plans[stop.runs[-1]].config.scenario


def test_lab_links_of_the_default_runs_are_the_plain_task_links():
    plans = stops.run_plans("default")
    assert stops.full_link(stops.get("unet"), plans) == "/lab?task=unet"
    assert stops.full_link(stops.get("degradation"), plans) == "/lab?task=depth"
    assert stops.design_link("GAP vs FC") == "/design?tab=GAP%20vs%20FC"
    assert stops.explorer_link("alexnet", 0) == "/explorer?arch=alexnet&layer=0"
    with pytest.raises(ValueError):
        stops.design_link("No such tab")


# --- the numbers --------------------------------------------------------------------------------------------

def test_alexnet_stops_against_real_layers(prepared):
    conv1 = nn.Conv2d(3, 96, 11, stride=4)
    out = conv1(torch.zeros(1, 3, 227, 227))
    card = _text(_panel("alexnet-conv1"))
    assert f"{out.shape[2]}x{out.shape[3]}x{out.shape[1]}" == "55x55x96" and "55x55x96" in card
    assert f"{sum(p.numel() for p in conv1.parameters()):,}" == "34,944" and "34,944" in card
    pool = _text(_panel("alexnet-pool1"))
    assert nn.MaxPool2d(3, 2)(out).shape[-1] == 27 and "27x27x96" in pool
    fc6 = nn.Linear(6 * 6 * 256, 4096)
    assert f"{fc6.weight.numel():,}" in stops.get("alexnet-fc6").point and "9,216" in _text(
        _panel("alexnet-fc6"))
    table = _panel("alexnet-parameters")
    total = _numel("alexnet")
    assert f"{total:,}" == "62,378,344" and f"{total:,}" in _text(table) and f"{total:,}" in stops.get(
        "alexnet-parameters").point
    frame = next(b for b in table if isinstance(b, Table)).frame
    rows = frame[frame.layer != "total"]
    # weights + biases = parameters on every row, and the rows add up to the total (invariants)
    for _, r in rows.iterrows():
        assert int(r.weights.replace(",", "")) + int(r.biases.replace(",", "")) == int(r.parameters.replace(",", ""))
    assert sum(int(p.replace(",", "")) for p in rows.parameters) == total


def test_design_stops_against_real_layers_and_the_flop_counter(prepared):
    vgg = _text(_panel("vgg-small-filters"))
    assert "**81**" in vgg and "**147**" in vgg and "3 → 5 → 7" in vgg
    assert 3 * 3 * 3 * 3 == 81 and 7 * 7 * 3 == 147
    one = _text(_panel("one-by-one"))
    direct = _macs(nn.Conv2d(480, 48, 5, padding=2, bias=False), 480, 14, 14)
    reduced = (_macs(nn.Conv2d(480, 16, 1, bias=False), 480, 14, 14)
               + _macs(nn.Conv2d(16, 48, 5, padding=2, bias=False), 16, 14, 14))
    assert f"{direct / 1e6:.1f}M" == "112.9M" and "112.9M" in one and "112.9M" in stops.get("one-by-one").point
    assert f"{reduced / 1e6:.1f}M" == "5.3M" and "5.3M" in one
    sep = _text(_panel("depthwise-separable"))
    dw = _macs(nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False), 3, 5, 5)
    pw = _macs(nn.Conv2d(3, 128, 1, bias=False), 3, 5, 5)
    std = _macs(nn.Conv2d(3, 128, 3, padding=1, bias=False), 3, 5, 5)
    assert (dw, pw, std) == (675, 9_600, 86_400)
    assert f"{dw:,} + {pw:,} = **{dw + pw:,}**" in sep and f"**{std:,}**" in sep
    assert f"{1 / separable_cost(512, 512, 3, 14).ratio:.1f}x" in sep and "8.8x" in stops.get(
        "depthwise-separable").notes
    gap = _text(_panel("global-average-pooling"))
    fc = nn.Linear(7 * 7 * 1024, 1024, bias=False).weight.numel()
    assert f"{fc:,}" in gap and f"{fc / 1e6:.1f}M" in stops.get("global-average-pooling").point


def test_inception_and_resnet_stops_against_the_engine(prepared):
    inc = _panel("inception-module")
    a = summarize("inception_module")
    b = summarize("inception_module", options={"reductions": True})
    text = _text(inc)
    assert f"{a.totals.macs / 1e6:.0f}M" == "854M" and "854M" in stops.get("inception-module").point
    assert f"{b.totals.macs / 1e6:.0f}M" in stops.get("inception-module").point
    assert a.layers[-1].output_shape[0] == 672 and "672" in text and "480" in text
    assert "358,055,936" in text                                # both readings of the slide's 358M
    assert any(isinstance(x, panels.Graph) and "digraph" in x.dot for x in walk(inc))
    variants = next(x for x in walk(_panel("resnet-variants")) if isinstance(x, Table)).frame
    for arch, row in zip(("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"), variants.itertuples()):
        s = summarize(arch)
        assert row.params == f"{_numel(arch):,}" == f"{s.totals.params:,}"
        assert row[3] == f"{s.totals.macs / 1e9:.3f}"
    point = stops.get("resnet-variants").point
    assert all(f"{summarize(a).totals.macs / 1e9:.1f}" in point for a in ("resnet18", "resnet50", "resnet152"))


def test_stages_and_summary_stops_against_parameter_counts(prepared):
    norm = _text(_panel("transfer-is-the-norm"))
    fc = nn.Linear(512, 1000)
    reused = _numel("resnet18") - sum(p.numel() for p in fc.parameters())
    assert f"{reused:,}" in norm and f"{reused / 1e6:.2f}M" in stops.get("transfer-is-the-norm").notes
    assert f"{_numel('googlenet'):,}" in _text(_panel("googlenet"))
    assert f"{_numel('googlenet'):,}" in stops.get("googlenet").notes
    assert f"{_numel('siamese'):,}" in stops.get("siamese-architecture").notes
    mob = summarize("mobilenet_v1").totals
    assert f"{mob.params / 1e6:.1f}M" in stops.get("mobilenet-v1").point and f"{mob.macs / 1e6:.0f}M" in stops.get(
        "mobilenet-v1").point
    assert f"{_numel('conv_autoencoder'):,}" == "140,594" and "140,594" in stops.get("autoencoder").notes
    card = _text(_panel("unet-concatenation"))
    assert "1024" in card.replace(",", "") and "56x56" in card
    assert f"{_numel('unet', padding='valid'):,}" in stops.get("unet-concatenation").notes


def test_transposed_convolution_stop_against_conv_transpose2d(prepared):
    panel = _panel("transposed-convolution")
    tconv = nn.ConvTranspose2d(1, 1, 3, stride=2, bias=False)
    nn.init.ones_(tconv.weight)
    want = tconv(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))[0, 0].detach().numpy()
    shown = [b for b in walk(panel) if isinstance(b, Table)][-1].frame.to_numpy()
    assert want.shape == (5, 5) and np.array_equal(shown, want)


# --- ready before class -------------------------------------------------------------------------------------

def test_missing_weights_names_the_stops_and_the_command(monkeypatch):
    import core.lecture.prepare as prep

    monkeypatch.setattr(prep, "imagenet_cached", lambda arch: arch == "alexnet_torchvision")
    missing = prep.missing_weights()
    assert [(m.arch, m.fallback) for m in missing] == [("resnet18", "starter")]
    assert "generic-to-specific" in missing[0].stops and "zfnet-visualising" in missing[0].stops
    assert prep.prefetch_command(missing) == "python -m core weights prefetch resnet18"


def test_prepare_keeps_panels_and_runs_on_disk_and_reuses_a_finished_run(tmp_path):
    """A tiny prepare of a training stop and a plain one (the real handlers, in this process; the
    page's "Train it live" test below goes through the worker processes): kept on disk, read back,
    invalidated when a run changes, and its run reused next time (`retrain` would train it again)."""
    from core.lecture import prepare as prep
    from tests.lecturefakes import InlineRunner

    seen = []
    report = prep.prepare(InlineRunner(tmp_path / "jobs"), "tiny", lambda f, m: seen.append(f),
                          only=("degradation", "alexnet-conv1"), folder=tmp_path)
    assert report.runs["depth"]["state"] == "done" and set(report.panels) == {"degradation", "alexnet-conv1"}
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen) and seen == sorted(seen)
    state = prep.state(tmp_path)
    assert state["profile"] == "tiny" and state["runs"]["depth"]["state"] == "done"
    deg = prep.load_panel(stops.get("degradation"), tmp_path)
    assert any(isinstance(b, Chart) for b in deg) and "plain8" in _text(deg)
    run = prep.load_run("depth", tmp_path)
    assert run.folder.is_dir() and set(run.loaded().final) >= {"plain8", "plain14", "resnet8", "resnet14"}
    assert prep.load_panel(stops.get("alexnet-conv1"), tmp_path) is not None
    # a different run on disk: the panel no longer fits
    key = tmp_path / "runs" / "depth" / "run.key"
    key.write_text("another run")
    assert prep.load_panel(stops.get("degradation"), tmp_path) is None
    key.write_text(prep._run_key(run))
    # preparing again reuses the finished run: nothing is submitted
    again = InlineRunner(tmp_path / "again")
    prep.prepare(again, "tiny", only=("degradation",), folder=tmp_path)
    assert again.submitted == [] and prep.load_panel(stops.get("degradation"), tmp_path) is not None


def test_the_cli_refuses_an_unknown_stop_and_lists_them(capsys):
    from core.__main__ import main

    assert main(["lecture", "prepare", "--only", "no-such-stop"]) == 2
    assert "no-such-stop" in capsys.readouterr().err
    assert main(["lecture", "list"]) == 0
    out = capsys.readouterr().out
    assert "inception-module" in out and len(out.strip().splitlines()) == len(stops.STOPS)


# --- the handout ---------------------------------------------------------------------------------------------

def test_the_handout_is_self_contained(prepared, tmp_path):
    """Written by the CLI from whatever is prepared (computed where not): one section per stop, the
    live links under the base URL, plotly.js beside it and nothing from a network."""
    from core.__main__ import main

    assert main(["lecture", "export", str(tmp_path / "h"), "--base-url", "https://lab.example.org/"]) == 0
    html = (tmp_path / "h" / "index.html").read_text()
    assert (tmp_path / "h" / "plotly.min.js").stat().st_size > 1_000_000
    for s in stops.STOPS:
        assert f'id="{s.slug}"' in html and f"https://lab.example.org/lecture?stop={s.slug}" in html
    assert not re.findall(r'src="https?:', html) and "cdn.plot.ly" not in html
    assert html.count('<script src="plotly.min.js"></script>') == 1
    from core.lecture.handout import panel_for

    charts = sum(isinstance(b, Chart) for s in stops.STOPS for b in walk(panel_for(s)))
    assert charts >= 8 and len(re.findall(r'<div id="chart-', html)) == charts      # every stop's every chart
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (tmp_path / "h" / src).is_file()


def test_markdown_of_the_handout():
    from core.lecture.handout import markdown

    assert markdown("- **a** and *b* `c`\n- d <e>") == ("<ul><li><strong>a</strong> and <em>b</em> <code>c</code></li>"
                                                       "<li>d &lt;e&gt;</li></ul>")
    assert markdown("#### t\n\nx×y") == "<h4>t</h4>\n<p>x×y</p>"


# --- the page -------------------------------------------------------------------------------------------------

def _lecture(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page("pages/lecture.py")
    return at.run()


def test_the_page_opens_on_a_linked_stop_and_steps_with_the_buttons(prepared):
    at = _lecture(stop="inception-module")
    assert not at.exception, [e.value for e in at.exception]
    assert at.header[0].value == "Inception module"
    k = stops.slugs().index("inception-module")
    assert any(f"stop {k + 1} of {len(stops.STOPS)}" in c.value for c in at.caption)
    assert "854M" in "\n".join(m.value for m in at.markdown)
    at.button(key="lecture_next").click().run()
    assert at.query_params["stop"] == stops.STOPS[k + 1].slug and at.header[0].value == stops.STOPS[k + 1].title
    at.radio(key=f"lecture_stop_pick_{stops.STOPS[k + 1].slug}").set_value("alexnet-conv1").run()
    assert not at.exception and "34,944" in "\n".join(m.value for m in at.markdown)
    at.button(key="lecture_prev").click().run()
    assert at.query_params["stop"] == "lenet-5" and at.query_params["sid"] == at.session_state["sid"]


def test_the_page_refuses_an_unknown_stop_with_a_message(prepared):
    at = _lecture(stop="not-a-stop", big="1")
    assert not at.exception
    assert any("not-a-stop" in w.value for w in at.warning)
    assert at.header[0].value == stops.STOPS[0].title and at.query_params["stop"] == stops.STOPS[0].slug
    assert at.button(key="lecture_prev").disabled and at.session_state["lecture_big"]
    assert at.query_params["big"] == "1"


def test_train_it_live_trains_the_stops_run_through_the_runner_and_shows_it(prepared, monkeypatch):
    """The degradation stop's "Train it live" with tiny settings: a job of the session's own through
    the dashboard's runner (as the Lab's), its progress, then its results in place of the prepared run."""
    from core.train.jobs import wait
    from pages.common import runner

    monkeypatch.setenv("CONVNETLAB_LECTURE_RUNS", "tiny")
    at = _lecture(stop="degradation")
    assert any("No finished run yet" in i.value for i in at.info)     # the module's folder has no runs
    at.button(key="lecture_train").click().run()
    job = at.session_state["lecture_live"]["degradation"]["jobs"]["depth"]
    assert runner().status(job).config == stops.run_plans("tiny")["depth"].config
    assert wait(runner(), job, timeout=300).state == "done"
    at.run()                                  # the live view sees the end, keeps the panel and reruns
    assert not at.exception, [e.value for e in at.exception]
    assert any("Trained live in this session" in c.value for c in at.caption)
    assert any("plain8" in str(t.value) for t in at.dataframe)
    at.button(key="lecture_back").click().run()
    assert any("No finished run yet" in i.value for i in at.info)
