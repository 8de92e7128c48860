"""Your own model on the pages (AppTest, no browser): timm's architectures and an ONNX file in the
explorer, a finished Studio run in Inside the network (its classes, its validation images, what
fine-tuning changed) and in the explorer (its new head), by the session's own link and by a share
link; few runs of each page, one training run for the module."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from core import registry
from core.analysis import summarize, summarize_module
from tests.conftest import ROOT
from tests.pagewait import rerun_until

APP = str(ROOT / "app.py")


def _page(path: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(path)
    return at.run()


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_explorer_steps_through_timms_inception_v4_and_xception():
    pytest.importorskip("timm")
    at = _page("pages/explorer.py", arch="timm:inception_v4", layer="0")
    _clean(at)
    assert at.radio(key="arch_source").value == "timm" and at.selectbox(key="timm_arch").value == "timm:inception_v4"
    assert at.metric[0].value == "42,679,816" and at.number_input(key="h_timm:inception_v4").value == 299
    assert any("Built by timm (marked *timm:inception_v4*)" in c.value and "need a download" in c.value
               for c in at.sidebar.caption)
    next(b for b in at.button if "Next" in b.label).click().run()
    assert at.session_state["layer"] == 1 and at.query_params["layer"] == "1"
    assert at.query_params["arch"] == "timm:inception_v4" and at.get("graphviz_chart")
    at.selectbox(key="timm_arch").set_value("timm:legacy_xception").run()          # picked from the search box
    _clean(at)
    assert at.metric[0].value == f"{summarize('timm:legacy_xception').totals.params:,}" == "22,855,952"
    assert at.session_state["layer"] == 0
    old = _page("pages/explorer.py", arch="timm:xception")                         # timm's old name in a link
    _clean(old)
    assert old.selectbox(key="timm_arch").value == "timm:legacy_xception" and old.metric[0].value == "22,855,952"


@pytest.fixture(scope="module")
def resnet18_onnx() -> bytes:
    pytest.importorskip("onnx2torch")
    from core.onnx_import import export_onnx

    spec = registry.get("resnet18")
    return export_onnx(spec.build(), spec.input_size)


def test_explorer_reads_an_onnx_export_of_resnet18_like_the_registry_entry(resnet18_onnx):
    """The done-when: 11,689,512 parameters and 1.814 GMACs, as the registry's ResNet-18 shows them; a
    malformed file and a 300 MB one get a sentence each, never a traceback."""
    from core.onnx_import import MAX_ONNX_MB

    ref = _page("pages/explorer.py", arch="resnet18")
    at = _page("pages/explorer.py")
    at.radio(key="arch_source").set_value("onnx").run()
    uploader = at.file_uploader(key="onnx_file")
    assert uploader.proto.max_upload_size_mb == MAX_ONNX_MB == 256            # the browser refuses larger first
    uploader.set_value([("resnet18.onnx", resnet18_onnx, "application/octet-stream")]).run()
    _clean(at)
    assert [m.value for m in at.metric][:2] == [m.value for m in ref.metric][:2] == ["11,689,512", "1.81 GMACs"]
    assert "FLOPs = 2 x MACs = 3,628,146,688" in at.metric[1].proto.help          # 2 x 1,814,073,344
    assert at.get("graphviz_chart") and at.query_params["src"] == "onnx" and "arch" not in at.query_params
    assert any("resnet18.onnx" in c.value and "opset 17" in c.value for c in at.caption)
    at.file_uploader(key="onnx_file").set_value([("broken.onnx", b"\x00garbage", "application/octet-stream")]).run()
    assert not at.exception and any(e.value.startswith("broken.onnx is not an ONNX file") for e in at.error)
    at.file_uploader(key="onnx_file").set_value([("huge.onnx", bytes(300 * 10**6), "application/octet-stream")]).run()
    assert not at.exception
    assert any("huge.onnx is 286 MB; the explorer reads ONNX files of up to 256 MB" in e.value for e in at.error)


@pytest.fixture(scope="module")
def finished_run():
    """One finished Studio run (ResNet-18 fine-tuned from layer3 on 3 classes of shapes), submitted
    through the server's runner in a session the pages issued."""
    from core.train.jobs import JobSpec
    from core.train.transfer import TrainConfig
    from pages.common import runner

    sid = _page("pages/home.py").session_state["sid"]
    cfg = TrainConfig(dataset="shapes", shapes_classes=3, shapes_per_class=20, weights="random", scenario="finetune",
                      epochs=2, batch_size=16, unfreeze_from="layer3")
    jr = runner()
    job = jr.submit(sid, JobSpec("train", cfg))
    end = time.time() + 400
    while jr.status(job).state in ("queued", "running") and time.time() < end:
        time.sleep(0.5)
    assert jr.status(job).state == "done", jr.status(job).message
    return sid, job, cfg


def test_a_studio_run_opens_inside_the_network_on_its_classes_images_and_changes(finished_run):
    sid, job, _ = finished_run
    studio = _page("pages/transfer.py", sid=sid, job=job)
    assert [p.proto.label for p in studio.get("page_link")][-2:] == ["Look inside this model",
                                                                    "Its architecture in the explorer"]
    at = _page("pages/inside.py", sid=sid, job=job)
    _clean(at)
    assert any(c.value.startswith("ResNet-18, scenario finetune, 3 classes: circle, square, triangle")
               for c in at.sidebar.caption)
    assert at.radio(key="in_src_run").value == "validation image"
    table = next(d.value for d in at.dataframe if "probability" in d.value.columns)
    assert sorted(table["name"]) == ["circle", "square", "triangle"]                 # its classes, not ImageNet's
    assert any(h.value == "Top-5 predictions (your run's classes)" for h in at.subheader)
    at.button(key="in_top_go").click().run()                                      # over its validation images
    _clean(at)
    key, _, _, _, n, found, names = at.session_state["top_result"]     # 12 validation images and the chosen one
    assert key == f"run:{job}" and n == 12 + 1 and names[0] == "validation #0 (circle)" and len(found) == 9
    at.button(key="in_changed_go").click().run()                                  # a job in a worker
    rerun_until(at, lambda a: f"changed_{job}_job" not in a.session_state, 300)
    _clean(at)
    wc = at.session_state[f"changed_{job}"]
    by = {s.stage: s for s in wc.stages}
    assert [s.stage for s in wc.stages] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert all(by[s].weight_change == 0.0 and by[s].cka == pytest.approx(1.0) for s in ("conv1", "layer1", "layer2"))
    assert by["layer4"].weight_change > 0 and by["fc"].new
    assert any("What training changed, stage by stage" in c.proto.spec for c in at.get("plotly_chart"))
    assert any(i.value.startswith("Frozen in this run: conv1, bn1, layer1, layer2. They did not change")
               for i in at.info)


def test_a_share_link_opens_the_run_read_only_in_inside_and_the_explorer(finished_run):
    from core.train.transfer import transfer_skeleton
    from pages.common import share_link_query

    _, job, cfg = finished_run
    query = dict(p.split("=", 1) for p in share_link_query(job).split("&"))
    viewer = _page("pages/inside.py", **query)                                    # another session, the token
    _clean(viewer)
    assert any(m.value == f"**Your Studio run** `{job}`" for m in viewer.sidebar.markdown)
    ex = _page("pages/explorer.py", **query, layer="5")
    _clean(ex)
    ref = summarize_module(transfer_skeleton(cfg, 3), "run", "run", (3, 32, 32))
    assert ex.radio(key="arch_source").value == "run" and ex.metric[0].value == f"{ref.totals.params:,}"
    assert ref.layers[-1].output_shape == [3] and ex.session_state["layer"] == 5
    assert any("ResNet-18 with a new linear head for 3 classes" in c.value for c in ex.caption)
    assert ex.query_params["job"] == job and ex.query_params["view"] == query["view"]
    guess = _page("pages/inside.py", job=job, view="0" * 32)                      # a wrong token sees nothing
    assert not guess.exception and any("share link is not valid" in w.value for w in guess.warning)
    assert not any("Your Studio run" in m.value for m in guess.sidebar.markdown)
