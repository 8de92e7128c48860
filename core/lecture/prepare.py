"""Ready before class: every stop's panel and every training stop's finished runs, computed ahead
and kept in the results directory (`<results>/lecture/`), so they survive a server restart and a
stop renders from disk in well under a second.

`prepare` computes the panels in this process and trains the runs through a job runner (the CLI's
own local runner, or the server's when the lecture page's button starts it), one after another,
with progress. On disk:

    lecture/prepared.json        what was prepared, when, with which run settings, how long each took
    lecture/panels/<slug>.pkl    each stop's panel (a pickle of `core.lecture.panels` blocks)
    lecture/runs/<plan>/         each finished run: run.pkl (its settings, state, events) and files/,
                                 the folder its job left (copied: the runner prunes its own folders)

A panel is read back only while it still fits (`signature`): the same component, the same runs,
the same ImageNet weights cached as when it was computed. The files are this server's own,
written and read by this code only, so pickles are fine here.

`missing_weights` says which stops fall back from ImageNet weights on this machine, and the
command that fetches them.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from core.lecture.panels import FinishedRun, Panel, stop_panel
from core.lecture.stops import STOPS, RunPlan, Stop, run_plans, run_profile
from core.train.events import ACTIVE_STATES, LRPoint, Phase, Step
from core.train.jobs import JobSpec, Runner
from core.train.store import results_dir
from core.weights import STARTER_ARCH, imagenet_cached

PANEL_VERSION = 2          # raise when the blocks change shape: older pickles are then computed again
OWNER = "lecture-prepare"  # the runner's owner of the prepared runs (one at a time)
Progress = Callable[[float, str], None]


def lecture_dir() -> Path:
    return results_dir() / "lecture"


# --- what the machine lacks --------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingWeights:
    """ImageNet weights a stop would use that are not cached here, and what it uses instead."""

    arch: str
    fallback: str              # "starter" or "random"
    stops: tuple[str, ...]     # slugs


def missing_weights(stops: tuple[Stop, ...] = STOPS) -> list[MissingWeights]:
    out: dict[str, list[str]] = {}
    for stop in stops:
        for arch in stop.weights:
            if not imagenet_cached(arch):
                out.setdefault(arch, []).append(stop.slug)
    return [MissingWeights(a, "starter" if a == STARTER_ARCH else "random", tuple(s)) for a, s in out.items()]


def prefetch_command(missing: list[MissingWeights]) -> str:
    return "python -m core weights prefetch " + " ".join(m.arch for m in missing)


# --- on disk ------------------------------------------------------------------------------------------------

def _run_key(run: FinishedRun) -> str:
    """A finished run as a stop's panel depends on it: its settings and how it ended."""
    return f"{run.config!r}:{run.state}"


def signature(stop: Stop, folder: Path | None = None) -> str:
    """What a stop's panel depends on: its component, the weights cached here and the runs it shows
    as they are kept now (each run's key, read from its small run.key file)."""
    parts = [str(PANEL_VERSION), repr(stop.component), *(f"{a}:{imagenet_cached(a)}" for a in stop.weights)]
    for name in stop.runs:
        try:
            parts.append(f"{name}:{(_runs_dir(folder) / name / 'run.key').read_text()}")
        except OSError:
            parts.append(f"{name}:none")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _runs_dir(folder: Path | None) -> Path:
    return (folder or lecture_dir()) / "runs"


def save_panel(stop: Stop, panel: Panel, folder: Path | None = None) -> None:
    d = (folder or lecture_dir()) / "panels"
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f"{stop.slug}.pkl.tmp"
    tmp.write_bytes(pickle.dumps({"signature": signature(stop, folder), "panel": panel}))
    tmp.replace(d / f"{stop.slug}.pkl")


def panel_file(slug: str, folder: Path | None = None) -> Path:
    return (folder or lecture_dir()) / "panels" / f"{slug}.pkl"


def load_panel(stop: Stop, folder: Path | None = None) -> Panel | None:
    """The prepared panel of a stop, or None when there is none or it no longer fits."""
    path = panel_file(stop.slug, folder)
    try:
        saved = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None
    if saved.get("signature") != signature(stop, folder):
        return None
    return saved["panel"]


def save_run(run: FinishedRun, folder: Path | None = None) -> FinishedRun:
    """Keeps a finished run under lecture/runs/<plan>/ (its job folder copied); returns it as kept."""
    d = _runs_dir(folder) / run.plan
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    files = None
    if run.folder is not None and Path(run.folder).is_dir():
        files = d / "files"
        shutil.copytree(run.folder, files)
    kept = replace(run, folder=files, results=None)
    (d / "run.pkl").write_bytes(pickle.dumps(kept))
    (d / "run.key").write_text(_run_key(kept))
    return kept


def load_run(plan: str, folder: Path | None = None) -> FinishedRun | None:
    path = _runs_dir(folder) / plan / "run.pkl"
    try:
        run = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None
    # The folder moves with the results directory: point at where it is now.
    files = path.parent / "files"
    return replace(run, folder=files if files.is_dir() else None)


def load_runs(stop: Stop, folder: Path | None = None) -> dict[str, FinishedRun]:
    runs = {name: load_run(name, folder) for name in stop.runs}
    return {name: run for name, run in runs.items() if run is not None}


def state(folder: Path | None = None) -> dict[str, Any] | None:
    """prepared.json: when, with which run settings, and how long each stop and run took; None
    before the first prepare."""
    try:
        return json.loads(((folder or lecture_dir()) / "prepared.json").read_text())
    except (OSError, ValueError):
        return None


def ready(stop: Stop, folder: Path | None = None) -> bool:
    return load_panel(stop, folder) is not None


# --- preparing --------------------------------------------------------------------------------------------


def train_run(runner: Runner, plan: RunPlan, progress: Progress, owner: str = OWNER,
              poll_s: float = 0.2) -> FinishedRun:
    """One plan's job through `runner`, waited for, with progress from its steps and phases (never
    going back: a run that trains several networks restarts its step count for each)."""
    t0 = time.time()
    jid = runner.submit(owner, JobSpec(plan.kind, plan.config))
    events: list = []
    done = 0.0
    while True:
        st = runner.status(jid)        # read first: once a job has ended, all its events are in
        new = runner.events(jid, len(events))
        events += new
        last = next((e for e in reversed(events) if isinstance(e, (Step, LRPoint, Phase))), None)
        if isinstance(last, (Step, LRPoint)):
            done = max(done, last.step / max(1, last.total_steps))
            what = (f"learning rate {last.step} of at most {last.total_steps}" if isinstance(last, LRPoint) else
                    f"{last.series + ' ' if last.series else ''}step {last.step} of {last.total_steps}")
            progress(done, f"{plan.title}: {what}")
        elif isinstance(last, Phase):
            progress(done, f"{plan.title}: {last.phase}")
        if st.state not in ACTIVE_STATES:
            break
        time.sleep(poll_s)
    res = runner.results(jid) if st.state == "done" else None
    folder = getattr(res, "folder", None)
    return FinishedRun(plan.name, plan.kind, plan.config, st.state, st.message, tuple(events),
                       Path(folder) if folder else None, round(time.time() - t0, 2))


@dataclass(frozen=True)
class Report:
    profile: str
    seconds: float
    panels: dict[str, float]            # slug -> seconds to compute
    runs: dict[str, dict[str, Any]]     # plan -> state, message, seconds
    missing: list[MissingWeights]


def prepare(runner: Runner, profile: str | None = None, progress: Progress = lambda f, m: None,
            only: tuple[str, ...] | None = None, folder: Path | None = None, retrain: bool = False) -> Report:
    """Computes every stop's panel and trains every training stop's runs, keeping them on disk.

    Args:
        runner: the job runner the runs go through (one at a time, as OWNER).
        profile: the run settings ("default": the pages' defaults; "tiny": seconds each, for tests);
            $CONVNETLAB_LECTURE_RUNS when None.
        progress: called with (fraction of the whole, what is happening).
        only: slugs to prepare (all stops when None).
        folder: where to keep it all (`lecture_dir()` when None).
        retrain: train every run again; otherwise a run already kept with the same settings, that
            ended done, is reused (preparing again after fetching weights recomputes the panels only).
    """
    profile = profile or run_profile()
    plans = run_plans(profile)
    stops = [s for s in STOPS if only is None or s.slug in only]
    needed = list(dict.fromkeys(name for s in stops for name in s.runs))
    work = len(stops) + 3 * len(needed)          # a run weighs about three panels in the bar
    done = 0
    t0 = time.time()
    timings: dict[str, float] = {}
    ran: dict[str, dict[str, Any]] = {}

    def tell(fraction: float, message: str) -> None:
        progress(min(1.0, (done + fraction) / work), message)

    for name in needed:
        kept = None if retrain else load_run(name, folder)
        if kept is not None and kept.state == "done" and kept.config == plans[name].config:
            run = kept
            tell(0, f"{plans[name].title}: kept from the last prepare")
        else:
            run = train_run(runner, plans[name], lambda f, m: tell(3 * f, m))
            save_run(run, folder)
        ran[name] = {"state": run.state, "message": run.message, "seconds": run.seconds}
        done += 3
    for stop in stops:
        tell(0, f"stop {stop.slug}")
        t = time.perf_counter()
        runs = load_runs(stop, folder) if stop.training else None
        save_panel(stop, stop_panel(stop, runs), folder)
        timings[stop.slug] = round(time.perf_counter() - t, 2)
        done += 1
    missing = missing_weights(tuple(stops))
    report = Report(profile, round(time.time() - t0, 1), timings, ran, missing)
    old = state(folder) or {}
    d = folder or lecture_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "prepared.json").write_text(json.dumps({
        "profile": profile, "when": time.time(), "seconds": report.seconds,
        "panels": {**old.get("panels", {}), **timings}, "runs": {**old.get("runs", {}), **ran},
        "missing": [{"arch": m.arch, "fallback": m.fallback, "stops": list(m.stops)} for m in missing]}, indent=1))
    progress(1.0, "ready")
    return report


class Background:
    """One preparation at a time in a thread of this process (the lecture page's button): its
    progress readable from any session, so a closed tab neither stops nor loses it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = False
        self.fraction = 0.0
        self.message = ""
        self.error: str | None = None
        self.report: Report | None = None

    def start(self, runner: Runner, profile: str | None = None) -> bool:
        """Starts `prepare` through `runner`; False when one is already running."""
        with self._lock:
            if self.running:
                return False
            self.running, self.fraction, self.message, self.error = True, 0.0, "starting", None
        threading.Thread(target=self._run, args=(runner, profile), daemon=True, name="lecture-prepare").start()
        return True

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message

    def _run(self, runner: Runner, profile: str | None) -> None:
        try:
            self.report = prepare(runner, profile, self._progress)
        except Exception as e:  # noqa: BLE001 - said on the page, the server goes on
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.running = False
