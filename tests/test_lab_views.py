"""The Training Lab as a lecturer and a student use it (AppTest, no browser): runs compared across a
session, axes fixed before the first epoch, each network's parameters, the Siamese network's
"none of these", cheap watching, and share links that work while a run trains.

What only a browser shows (text sizes on charts, what fits at 1024x768, the share popover while a
run trains) is in tests/test_lab_browser.py."""

from __future__ import annotations

import gc
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from core.images import load_image
from core.lab import depth as dp
from core.lab import new_employee as ne
from core.lab import oneshot
from core.lab import siamese as sm
from core.train.events import Epoch, Step
from tests.conftest import SMALL_SIAMESE
from tests.test_pages import APP, _lab_run, _page


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _title(spec: dict) -> str:
    title = spec["layout"].get("title", {})
    return str(title.get("text", "")) if isinstance(title, dict) else str(title)


# --- 1. autoencoder runs compared across a session --------------------------------------------------

def test_the_sessions_autoencoder_runs_are_compared_by_width():
    """Two runs at widths 2 and 16 in one session: one chart of the validation MSE per width, checked
    against each run's saved reconstructions, and the same validation digits rebuilt by both."""
    from pages.common import runner

    at = _page("pages/lab.py", task="autoencoder", bottleneck="2", epochs="1")
    _lab_run(at)
    assert any("Done: bottleneck 2" in s.value for s in at.success), [e.value for e in at.error]
    first = at.query_params["job"]
    at.select_slider(key="ae_bottleneck").set_value(16).run()
    assert not at.button(key="lab_go").disabled, ([i.value for i in at.info], runner().status(first))
    _lab_run(at)
    second = at.query_params["job"]
    assert first != second and any("Done: bottleneck 16" in s.value for s in at.success)
    chart = next(c for c in _charts(at) if "per bottleneck width" in _title(c))
    shown = {x: y for trace in chart["data"] for x, y in zip(trace["x"], trace["y"])}
    assert sorted(shown) == [2, 16]
    for job, width in ((first, 2), (second, 16)):
        a = runner().results(job).arrays
        # independently: the saved reconstructions (0..255) against the clean validation digits
        mse = float(((a["reconstructions"] / 255.0 - a["val_images"] / 255.0) ** 2).mean())
        assert shown[width] == pytest.approx(mse, rel=0.03, abs=2e-4)
    assert {"**input**", "**2**", "**16**"} <= {m.value for m in at.markdown}
    rows = [i.proto.imgs for i in at.get("image") if not i.proto.imgs[0].caption]
    assert [len(r) for r in rows] == [8, 8, 8]                  # eight digits, then each run's rebuilt eight


# --- 2. axes fixed from the start -------------------------------------------------------------------

def _live_script(task: str, with_epoch: bool) -> None:
    import streamlit as st

    import importlib

    from core.lab.common import task_module
    from core.train.events import Epoch, Step

    cfg = task_module(task).Config()
    series = {"unet": "unet", "siamese": "siamese", "autoencoder": "", "depth": "plain20"}[task]
    metrics = {"unet": {"iou": 0.5}, "siamese": {"one_shot_20": 0.5, "one_shot_5": 0.6}, "autoencoder": {"mse": 0.05},
               "depth": {"train_error": 0.4, "val_error": 0.5}}[task]
    ev = [Step(step=i, total_steps=20, epoch=1, loss=1.0 / i, lrs=(0.1,), elapsed=0.1 * i, images_per_s=100.0, eta=1.0,
               series=series) for i in range(1, 6)]
    if with_epoch:
        ev.append(Epoch(epoch=1, train_loss=0.5, val_loss=0.6, metrics=metrics, images_per_s=100.0, elapsed=1.0,
                        series=series))
    importlib.import_module(f"pages.lab_views.{task}").live(ev, cfg)
    st.write("drawn")


@pytest.mark.parametrize("task,axis,expected", [("unet", "yaxis2", [0, 1]), ("siamese", "yaxis2", [0, 1])])
def test_accuracy_and_iou_axes_read_0_to_1_before_the_first_epoch(task, axis, expected):
    at = AppTest.from_function(_live_script, args=(task, False), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    spec = next(c for c in _charts(at) if "training loss per step" in json.dumps(c))
    assert spec["layout"][axis]["range"] == expected and spec["layout"][axis].get("autorange") is False


def test_an_unbounded_metric_shows_no_invented_numbers_before_the_first_epoch():
    at = AppTest.from_function(_live_script, args=("autoencoder", False), default_timeout=60).run()
    spec = next(c for c in _charts(at) if "training loss per step" in json.dumps(c))
    assert spec["layout"]["yaxis2"]["showticklabels"] is False
    assert any(a.get("text") == "after the first epoch" for a in spec["layout"]["annotations"])
    at = AppTest.from_function(_live_script, args=("autoencoder", True), default_timeout=60).run()
    spec = next(c for c in _charts(at) if "training loss per step" in json.dumps(c))
    assert spec["layout"]["yaxis2"]["rangemode"] == "tozero" and "showticklabels" not in spec["layout"]["yaxis2"]


def test_the_depth_error_chart_reads_0_to_100_percent():
    at = AppTest.from_function(_live_script, args=("depth", True), default_timeout=60).run()
    spec = next(c for c in _charts(at) if "Error per epoch" in _title(c))
    assert spec["layout"]["yaxis"]["range"] == [0, 1]


def test_every_lab_chart_has_dark_projector_sized_text():
    """The figures say their text size and colour themselves (Streamlit's theme would draw ticks at
    12.75 px in pale grey); what a browser makes of them is checked in test_lab_browser.py."""
    at = AppTest.from_function(_live_script, args=("unet", True), default_timeout=60).run()
    layout = next(c for c in _charts(at) if "training loss per step" in json.dumps(c))["layout"]
    for axis in ("xaxis", "yaxis", "xaxis2", "yaxis2"):
        assert layout[axis]["tickfont"]["size"] >= 12 and layout[axis]["tickfont"]["color"] == "#111111"
    assert all(a["font"]["size"] >= 12 for a in layout["annotations"])


# --- 3. plain vs residual: each network's parameters -------------------------------------------------

def test_the_depth_run_names_each_networks_parameters():
    at = _page("pages/lab.py", task="depth", depths="8,14", width="4", data="shapes", per_class="20", size="8",
               epochs="1")
    _lab_run(at, 300)
    line = next(c.value for c in at.caption if "trainable" in c.value.lower())
    for depth in (8, 14):
        for kind in ("plain", "resnet"):
            net = dp.CifarNet(depth, 4, kind == "resnet", 8)          # 8 shape classes
            assert f"{kind}{depth} {sum(p.numel() for p in net.parameters()):,}" in line, line


# --- 4. the Siamese network's "none of these" ---------------------------------------------------------

def test_the_best_threshold_is_the_one_an_roc_curve_finds():
    from sklearn.metrics import roc_curve

    g = torch.Generator().manual_seed(0)
    same = torch.randn(300, generator=g) + 1.5
    different = torch.randn(2000, generator=g)
    t = oneshot.best_threshold(same, different)
    y = np.r_[np.ones(300), np.zeros(2000)]
    fpr, tpr, _ = roc_curve(y, np.r_[same.numpy(), different.numpy()])
    assert t.balanced_accuracy == pytest.approx(0.5 + (tpr - fpr).max() / 2, abs=1e-9)
    assert t.same_accepted == pytest.approx(float((same >= t.threshold).double().mean()))
    assert t.different_rejected == pytest.approx(float((different < t.threshold).double().mean()))
    # perfectly separated scores: a threshold between them, everything right
    t = oneshot.best_threshold(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.3, 0.2]))
    assert 0.3 < t.threshold < 0.8 and t.balanced_accuracy == 1.0


@pytest.fixture()
def siamese_run(small_siamese):
    """The session's small Siamese run (tests/conftest.py, shared with tests/test_lab_twins.py): its folder
    and results."""
    _, res, _, folder = small_siamese
    return folder, res


def test_the_runs_threshold_is_calibrated_on_the_training_classes(siamese_run):
    """Recomputed here: the held-out drawings of the training classes against the training drawings,
    distances from the saved model's embeddings with torch.cdist, the best balanced accuracy from an
    ROC curve. The threshold never looked at the unseen classes."""
    from safetensors.torch import load_file
    from sklearn.metrics import roc_curve

    from core.train.data import stratified_split

    _, res = siamese_run
    cfg = sm.Config(**SMALL_SIAMESE)
    data = sm.load_data(cfg)
    seen, _ = sm.split_classes(cfg)
    tr_all = torch.nonzero(data.labels < len(seen)).flatten()
    tr_rel, va_rel = stratified_split(data.labels[tr_all], 0.1, cfg.seed)
    tr, held = tr_all[tr_rel], tr_all[va_rel]
    net = sm.Siamese(cfg.embedding, cfg.loss)
    net.load_state_dict(load_file(str(res.model_file())))
    net.eval()
    with torch.no_grad():
        h, t = (torch.nn.functional.normalize(net.encoder(data.images[i]), dim=1) for i in (held, tr))
    dist = torch.cdist(h, t)                                                    # (held, train)
    same = data.labels[held][:, None] == data.labels[tr][None]
    saved_same = np.sort(res.arrays["verify_same"])
    assert np.allclose(saved_same, np.sort(-dist[same].numpy()), atol=1e-4)    # every same pair, minus the distance
    assert set(np.round(res.arrays["verify_different"], 4)) <= set(np.round(-dist[~same].numpy(), 4))
    scores = np.r_[res.arrays["verify_same"], res.arrays["verify_different"]]
    y = np.r_[np.ones(len(res.arrays["verify_same"])), np.zeros(len(res.arrays["verify_different"]))]
    fpr, tpr, _ = roc_curve(y, scores)
    v = res.final["verify"]
    assert v["balanced_accuracy"] == pytest.approx(0.5 + (tpr - fpr).max() / 2, abs=1e-6)
    assert v["same_pairs"] == int(same.sum()) and v["balanced_accuracy"] > 0.7


def _drawing(kind: str) -> bytes:
    im = Image.new("RGB", (200, 200), "white")
    d = ImageDraw.Draw(im)
    if kind == "#":
        for x in (70, 130):
            d.line([(x, 30), (x, 170)], fill="black", width=10)
        for y in (70, 130):
            d.line([(30, y), (170, y)], fill="black", width=10)
    else:                                                                         # "O"
        d.ellipse([40, 40, 160, 160], outline="black", width=10)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _results_script(folder: str) -> None:
    from core.lab.common import load_results
    from pages.lab_views import siamese as view

    view.results(load_results(folder))


def test_strangers_are_turned_away_and_the_threshold_is_on_the_page(siamese_run):
    folder, res = siamese_run
    at = AppTest.from_function(_results_script, args=(str(folder),), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    thr = res.final["verify"]["threshold"]
    assert any(f"of at least {thr:.2f}" in m.value for m in at.markdown)
    shown = next(m.value for m in at.metric if m.label == "Strangers turned away")
    # independently: every drawing of the unseen classes that are neither staff (0-4) nor the newcomer (5)
    a = res.arrays
    classes = np.unique(a["test_labels"])
    gal = ne.new_employee(res, list(range(5)), 5)                                  # no threshold: raw scores
    net = ne.load_model(res)
    strangers = ~np.isin(a["test_labels"], classes[:6])
    best = ne.classify(net, gal.references, a["test_images"][strangers] / 255.0).max(1)
    assert shown == f"{float((best < thr).mean()):.0%}"


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _closest(res, references: np.ndarray, query: np.ndarray) -> tuple[float, int]:
    """Independently of the page and of Siamese.similarity: the saved encoder's unit embeddings, the
    Euclidean distance to each reference with torch.cdist; (minus the smallest distance, its reference)."""
    net = ne.load_model(res)
    x = torch.from_numpy(np.concatenate([references, query[None]]).astype(np.float32)).unsqueeze(1)
    with torch.no_grad():
        e = torch.nn.functional.normalize(net.encoder(x), dim=1)
    d = torch.cdist(e[-1:], e[:-1])[0]
    return float(-d.min()), int(d.argmin())


def test_a_query_below_the_threshold_is_none_of_these(siamese_run):
    """The issue's case: a newcomer drawn by hand ("O"), then queries. The page answers "none of these"
    exactly when the closest reference (computed here) is less similar than the run's threshold: for a
    hand-drawn "#", whichever it is with this network; for the drawing of an unseen class with no
    reference that is least like any reference, always (it is below the threshold); the newcomer's
    own drawing goes to the newcomer."""
    folder, res = siamese_run
    thr = res.final["verify"]["threshold"]
    at = AppTest.from_function(_results_script, args=(str(folder),), default_timeout=120).run()
    at.radio(key="sia_new_how").set_value("upload").run()
    at.file_uploader(key="sia_new_up").set_value([("o.png", _drawing("O"), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    refs = ne.new_employee(res, list(range(5)), ne.prepare(load_image(_drawing("O")).pixels)).references
    names = [f"staff {k + 1}" for k in range(5)] + ["newcomer"]
    a = res.arrays
    classes = np.unique(a["test_labels"])
    strangers = np.flatnonzero(~np.isin(a["test_labels"], classes[:5]))
    prepared = {i: ne.prepare(load_image(_png(a["test_images"][i])).pixels) for i in strangers}
    farthest = min(strangers, key=lambda i: _closest(res, refs, prepared[i])[0])
    queries = {"#": _drawing("#"), "stranger": _png(a["test_images"][farthest]), "O": _drawing("O")}
    verdicts = {}
    for name, data in queries.items():
        at.file_uploader(key="sia_new_q").set_value([(f"{name}.png", data, "image/png")]).run()
        assert not at.exception, [e.value for e in at.exception]
        best, who = _closest(res, refs, ne.prepare(load_image(data).pixels))
        unknown = any("None of these" in w.value and f"below the threshold {thr:.2f}" in w.value for w in at.warning)
        went = [s.value for s in at.success if "The query goes to" in s.value]
        if best < thr:
            assert unknown and not went, (name, best, thr)
        else:
            assert not unknown and went and f"**{names[who]}**" in went[0], (name, best, thr, went)
        verdicts[name] = "none of these" if unknown else names[who]
    assert verdicts["stranger"] == "none of these" and verdicts["O"] == "newcomer", verdicts


# --- 5. watching is cheap -------------------------------------------------------------------------------

def test_the_servers_imports_are_out_of_the_collectors_sight():
    """Streamlit collects garbage after every script run; with torch imported, a full collection
    walked ~400,000 objects (0.2 s) on every tick of a watched run. After the app's first run they
    are frozen: out of the generations a collection walks (no timing here: bench/bench_watch.py measures it)."""
    import torch

    AppTest.from_file(APP, default_timeout=60).run()
    assert gc.get_freeze_count() > 100_000
    gc.collect(2)
    # what the imports left (torch's own module dictionary) is in the permanent generation, which a
    # full collection does not walk: it is no longer among the objects of generation 2
    assert not any(o is torch.__dict__ for o in gc.get_objects(2))


def _memo_script() -> None:
    import streamlit as st

    from pages.lab_views.charts import live_figure

    ss = st.session_state
    ev = ss.setdefault("ev", [])
    ev.extend(ss.pop("new", []))
    built = ss.setdefault("built", [])
    live_figure("k", ev, lambda: built.append(len(ev)) or len(ev))


def test_a_live_figure_is_rebuilt_only_for_new_events():
    step = Step(step=1, total_steps=9, epoch=1, loss=1.0, lrs=(0.1,), elapsed=0.1, images_per_s=1.0, eta=1.0)
    epoch = Epoch(epoch=1, train_loss=1.0, val_loss=1.0, metrics={}, images_per_s=1.0, elapsed=1.0)
    at = AppTest.from_function(_memo_script, default_timeout=30)
    at.session_state["new"] = [step]
    at.run()
    at.run()                                             # a tick with nothing new: not rebuilt
    at.session_state["new"] = [step]
    at.run()                                             # a new step within REBUILD_S: not rebuilt
    assert at.session_state["built"] == [1]
    at.session_state["new"] = [epoch]
    at.run()                                             # an epoch: at once
    assert at.session_state["built"] == [1, 3]


# --- 6. share links ----------------------------------------------------------------------------------

def test_a_running_run_has_a_whole_share_link_and_a_wrong_token_is_said(monkeypatch):
    from pages.common import runner

    monkeypatch.setenv("CONVNETLAB_PUBLIC_URL", "https://convnet.example.edu/class/")
    at = _page("pages/lab.py", task="autoencoder", epochs="30")
    at.button(key="lab_go").click().run()
    job = at.query_params["job"]
    try:
        assert runner().status(job).state in ("queued", "running")
        link = next(c.value for c in at.code if "view=" in c.value)
        assert re.fullmatch(rf"https://convnet\.example\.edu/class/lab\?task=autoencoder&job={job}&view=[0-9a-f]{{32}}",
                            link), link
        token = link.split("view=")[1]
        viewer = _page("pages/lab.py", task="autoencoder", job=job, view=token)
        assert any("read-only" in i.value for i in viewer.info)          # a running run, shared
        wrong = _page("pages/lab.py", task="autoencoder", job=job, view="0" * 32)
        assert any("share link is not valid" in w.value for w in wrong.warning)
        assert not any("read-only" in i.value for i in wrong.info)
        cut = _page("pages/transfer.py", job=job[:6], view=token)         # the Studio says it too
        assert any("share link is not valid" in w.value for w in cut.warning)
        studio = _page("pages/transfer.py")                               # and gives its whole link, queued
        studio.button(key="tr_go").click().run()
        studio_job = studio.session_state["tr_job"]
        try:
            link = next(c.value for c in studio.code if "view=" in c.value)
            assert re.fullmatch(rf"https://convnet\.example\.edu/class/transfer\?job={studio_job}&view=[0-9a-f]{{32}}",
                                link), link
        finally:
            runner().cancel(studio_job)
    finally:
        runner().cancel(job)


def test_a_viewer_who_trains_gets_their_own_run_in_the_address():
    """The lab's cheapest run (a U-Net on 100 images of 16 px, about 2 s): what is checked is whose run the
    address names, the same for every task."""
    from pages.common import runner, share_link_query

    tiny = dict(task="unet", images="100", size="16", epochs="1")
    owner = _page("pages/lab.py", **tiny)
    _lab_run(owner)
    assert any("Done: IoU" in s.value for s in owner.success), [e.value for e in owner.error]
    job = owner.query_params["job"]
    token = share_link_query(job).split("view=")[1]
    viewer = _page("pages/lab.py", **tiny, job=job, view=token)
    assert any("read-only" in i.value for i in viewer.info)
    viewer.button(key="lab_go").click().run()
    mine = viewer.session_state["lab_jobs"]["unet"]
    try:
        assert mine != job and viewer.query_params["job"] == mine
        assert "view" not in viewer.query_params
        assert mine in {j.id for j in runner().jobs_of(viewer.session_state["sid"])}
        assert not any("read-only" in i.value for i in viewer.info)
    finally:
        runner().cancel(mine)


@pytest.mark.parametrize("configured,browser_url,host,expected", [
    ("https://convnet.example.edu/class/", "http://10.0.0.5:8501/lab", "10.0.0.5:8501", "https://convnet.example.edu/class"),
    (None, "http://127.0.0.1:8501/lab", None, "http://127.0.0.1:8501"),
    (None, "https://lab.example.org/course/lab/", None, "https://lab.example.org/course"),
    ("javascript:alert(1)", None, "localhost:8501", "http://localhost:8501"),        # not an http(s) address
    (None, None, "evil.example\"><script>", None),                                   # not a host
    (None, None, None, None)])
def test_the_public_address_of_a_share_link(configured, browser_url, host, expected):
    from core.links import absolute_link, public_base

    base = public_base(configured, browser_url, host, "lab")
    assert base == expected
    assert absolute_link(base, "/lab?task=unet&job=abc") == (expected or "") + "/lab?task=unet&job=abc"
