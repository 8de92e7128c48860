"""Shared test setup: the project root on sys.path, a fresh results directory per run, the markers of
the quick loop, the order two workers take the modules in (pytest-xdist), a guard against a test that
leaves Streamlit patched, and the runs that several test modules read."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The results directory (the server secret, the job store, the runs, the lecture's prepared state) is a
# fresh temporary folder per test run, never the user's cache; with xdist one per worker (the workers
# inherit the controller's environment, and two workers' runners, prunes and prepared lectures must not
# meet in one folder).
import os  # noqa: E402
import tempfile  # noqa: E402

if "CONVNETLAB_RESULTS" not in os.environ or (os.environ.get("CONVNETLAB_TEST_RESULTS_FRESH") == "1"
                                             and os.environ.get("PYTEST_XDIST_WORKER")):
    os.environ["CONVNETLAB_RESULTS"] = tempfile.mkdtemp(
        prefix=f"convnetlab-test-results-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
    os.environ["CONVNETLAB_TEST_RESULTS_FRESH"] = "1"

# Two workers on two cores: each worker's torch (and the job workers and servers it starts) gets its
# share of the cores. Two threads per worker would run four on two cores, and torch's threads spin
# while they wait: under that contention one autoencoder epoch took 22 CPU-s instead of 4.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _WORKERS > 1:
    _threads = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CONVNETLAB_JOB_THREADS"):
        os.environ.setdefault(_var, _threads)

import pytest  # noqa: E402

# --- markers: the quick loop (`bash scripts/test.sh --quick`) leaves out browsers, Ray and long training ---
BROWSER_MODULES = {"test_browser", "test_browser_own_model", "test_browser_transfer_norm", "test_lab_browser",
                   "test_lecture_browser", "test_class"}
RAY_MODULES = {"test_class"}          # and in test_runners the tests that use its Ray cluster (see _uses_ray)
SLOW_SECONDS = 2.0          # a test that took longer in the recorded run is slow (most: tiny runs trained to the end)
# Fixtures that train a network to the end (tens of seconds, paid by whichever of their tests runs first):
# every test that uses one counts as slow, not only the one that paid for it in the recorded run.
TRAINING_FIXTURES = {"small_siamese", "trained_ae"}
SLOW_FILE = Path(__file__).with_name("slow_tests.txt")


def _recorded() -> dict[str, float]:
    """Tests recorded as slow, with their seconds, and each module's other tests, their seconds together
    under the module's path (tests/slow_tests.txt, rewritten by `scripts/test.sh --record-slow`)."""
    try:
        lines = SLOW_FILE.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        if line.strip() and line[0] != "#":
            nid, _, secs = line.rpartition(" ")
            try:
                out[nid] = float(secs)
            except ValueError:
                out[line.strip()] = SLOW_SECONDS
    return out


def _module(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""


def _uses_ray(item) -> bool:
    """A test of test_runners that runs on its Ray cluster: it asks for the cluster, or for the
    runner fixture with the "ray" backend (which asks for the cluster itself)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "ray_cluster" in item.fixturenames or "ray" in params.values()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marks (browser, ray, slow) and the order the workers take the modules in. Under
    `--dist loadfile` (scripts/test.sh) a module runs whole on one worker: its server, its Ray cluster
    and its module fixtures are set up once. With --no-loadscope-reorder xdist hands the modules out in
    this order, each to the first free worker: the longest first, by their recorded seconds, so that the
    two workers finish together; a module keeps its own order."""
    recorded = _recorded()
    quick = "not slow" in (config.getoption("markexpr", "") or "")      # the slow tests will be deselected
    modules: dict[str, list] = {}
    weight: dict[str, float] = {}
    for item in items:
        module = _module(item)
        seconds = recorded.get(item.nodeid)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        if module in RAY_MODULES or (module == "test_runners" and _uses_ray(item)):
            item.add_marker(pytest.mark.ray)
        if seconds is not None or TRAINING_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if module not in modules:
            modules[module] = []
            weight[module] = recorded.get(item.nodeid.partition("::")[0], 0.0)   # its other tests together
        modules[module].append(item)
        if seconds is not None and not quick:
            weight[module] += seconds
    order = sorted(modules, key=lambda m: -weight[m])
    items[:] = [i for m in order for i in modules[m]]


# --- AppTest: the installed components are looked up, and the pages compiled, once per test process ---------
def pytest_configure(config):
    """Every new AppTest scans all installed packages' metadata for Streamlit components (0.45 s of
    parsing 110 packages' METADATA, the same answer every time: nothing is installed during a run),
    and a run makes hundreds of AppTests. The scan is kept for the process.
    The real server scans once at start, as before."""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:          # another Streamlit: nothing to keep
        return
    import functools

    scan = manifest_scanner.scan_component_manifests
    if not hasattr(scan, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.cache(scan)
    _share_compiled_pages()


def _share_compiled_pages() -> None:
    """Every new AppTest also compiles each page it runs afresh (parse, Streamlit's "magic" rewrite,
    compile: about a fifth of test_pages.py's quick part), the same bytecode each time: no source changes during
    a run. One script cache serves every AppTest of the process, as one serves every session of the
    real server."""
    try:
        from streamlit.testing.v1 import app_test
    except ImportError:
        return
    if not getattr(app_test.ScriptCache, "shared", False):
        cache = app_test.ScriptCache()

        def shared_cache():
            return cache

        shared_cache.shared = True
        app_test.ScriptCache = shared_cache


# --- a test must leave Streamlit as it found it ------------------------------------------------------------
@pytest.fixture(autouse=True)
def _streamlit_unpatched():
    """AppTest runs every page in the test process: a Streamlit function replaced by one test (say
    st.file_uploader = lambda ...) stays replaced for every later test in the process, where pages then
    fail far from the cause (a KeyError on an uploader's key, "'Uploaded' object is not iterable").
    Undo such changes with pytest's monkeypatch; this fails the test that leaves one."""
    st = sys.modules.get("streamlit")
    before = dict(vars(st)) if st is not None else {}
    yield
    if st is not None:
        now = vars(st)
        changed = sorted(k for k, v in before.items() if not k.startswith("_") and now.get(k) is not v)
        for k in changed:
            setattr(st, k, before[k])
        assert not changed, f"the test left streamlit.{', streamlit.'.join(changed)} replaced (restored now)"


# --- runs shared by several modules ---------------------------------------------------------------------------
# Small enough for ~12 s on an idle 2-core CPU, large enough that training clearly helps (seeds 0-2 measured:
# trained minus untrained +0.13..0.15 at 5-way, trained minus pixels +0.16..0.32).
SMALL_SIAMESE = dict(characters=120, drawers=8, unseen=20, ways="5,20", trials=400, epochs=8)


@pytest.fixture(scope="session")
def small_siamese(tmp_path_factory):
    """One small Siamese run for the test run, as (final, results, events, folder): test_lab_twins checks
    what it learnt, test_lab_views its verification threshold and what the page says with it. Under
    xdist the two modules may run on different workers: the first to ask trains it, in the run's
    folder that both workers' temporary folders share, and the other waits for it (a file lock)."""
    import fcntl
    import pickle

    from core.lab import siamese as sm
    from core.lab.common import load_results, run_headless

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        events: list = []
        folder = tmp_path_factory.mktemp("siamese")
        final, res = run_headless(sm.Config(**SMALL_SIAMESE), folder, on_event=events.append)
        return final, res, events, folder
    shared = tmp_path_factory.getbasetemp().parent       # this run's folder, above each worker's own
    folder, saved = shared / "small-siamese", shared / "small-siamese-events.pickle"
    with open(shared / "small-siamese.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.is_file():
            events = []
            run_headless(sm.Config(**SMALL_SIAMESE), folder, on_event=events.append)
            saved.write_bytes(pickle.dumps(events))     # our own events, written and read by this test run
    res = load_results(folder)
    return res.final, res, pickle.loads(saved.read_bytes()), folder
