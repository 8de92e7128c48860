"""Page logic through Streamlit's AppTest (no browser): every page renders without an exception,
and the explorer does what a student does with it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core import registry
from tests.conftest import ROOT
from tests.pagewait import rerun_until
from tests.sweeps import every

APP = str(ROOT / "app.py")
PAGES = ["pages/home.py", "pages/explorer.py", "pages/inside.py", "pages/transfer.py", "pages/lab.py",
         "pages/design.py", "pages/zoo.py"]


def _explorer(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page("pages/explorer.py")
    return at.run()


def _text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title


def test_home_reports_device_and_weights():
    at = AppTest.from_file(APP, default_timeout=60).run()
    labels = {m.label: m.value for m in at.metric}
    assert labels["Device"] in {"CPU", "CUDA", "MPS"}
    assert labels["Architectures"] == str(len(registry.names()))


def test_explorer_alexnet_conv1_card_and_stepping():
    at = _explorer(arch="alexnet", layer="0")
    assert not at.exception
    text = _text(at)
    assert "55x55x96" in text and "34,944" in text and "(227 - 11 + 2×0)/4 + 1 = 55" in text
    assert at.metric[0].value == "62,378,344"
    next_button = next(b for b in at.button if "Next" in b.label)
    next_button.click().run()
    assert at.session_state["layer"] == 1
    assert at.query_params["layer"] == "1"
    at.slider(key="layer").set_value(16).run()
    text = _text(at)
    assert "37,748,736" in text and "9,216" in text


def test_explorer_options_change_the_numbers():
    at = _explorer(arch="alexnet")
    at.toggle(key="opt_alexnet_two_towers").set_value(True).run()
    assert at.metric[0].value == "60,965,224"
    assert at.query_params["o_two_towers"] == "True"


def test_explorer_too_small_input_is_a_clear_error():
    at = _explorer(arch="alexnet")
    at.number_input(key="h_alexnet").set_value(32).run()
    at.number_input(key="w_alexnet").set_value(32).run()
    assert not at.exception
    assert at.error and "pool2" in at.error[0].value


def test_explorer_odd_layer_values_are_refused_with_a_message():
    for raw in ("²", "9" * 5000, "-3", "1e3"):
        at = _explorer(arch="alexnet", layer=raw)
        assert not at.exception, raw
        assert any("Ignored from the link: layer=" in w.value for w in at.warning), raw
        assert at.session_state["layer"] == 0 and at.metric[0].value == "62,378,344"


def test_a_made_up_session_id_starts_a_fresh_session():
    """?sid=test is not an id this server issued: a fresh one replaces it, with a note, so two
    students who type the same word never share (or cancel) each other's runs."""
    a = _page("pages/transfer.py", sid="test")
    b = _page("pages/transfer.py", sid="test")
    assert not a.exception and not b.exception
    assert a.session_state["sid"] != "test" and a.session_state["sid"] != b.session_state["sid"]
    assert a.query_params["sid"] == a.session_state["sid"]
    assert any("not issued by this server" in i.value for i in a.info)
    again = _page("pages/transfer.py", sid=a.session_state["sid"])      # the issued id is kept
    assert again.session_state["sid"] == a.session_state["sid"]
    assert not any("not issued by this server" in i.value for i in again.info)


def test_the_session_id_stays_in_the_address_on_every_page():
    """Navigating away and back (then reloading) must not lose the session: every page keeps sid=."""
    at = _page("pages/transfer.py")
    sid = at.session_state["sid"]
    for path in ("pages/explorer.py", "pages/home.py", "pages/zoo.py", "pages/lab.py", "pages/transfer.py"):
        at.switch_page(path).run()
        assert not at.exception, path
        assert at.query_params["sid"] == sid, path


def test_a_read_only_share_link_shows_the_run_without_cancel():
    from pages.common import runner

    owner = _page("pages/transfer.py")
    owner.radio(key="tr_ds").set_value("shapes").run()
    owner.slider(key="tr_shn").set_value(10).run()
    owner.radio(key="tr_w").set_value("random").run()
    owner.radio(key="tr_scenario").set_value("finetune").run()
    owner.slider(key="tr_ep").set_value(30).run()
    owner.button(key="tr_go").click().run()
    job = owner.session_state["tr_job"]
    try:
        share = next(c.value for c in owner.code if "view=" in c.value)   # the owner's "Share" popover
        token = share.split("view=")[1]
        assert share == f"/transfer?job={job}&view={token}"
        viewer = _page("pages/transfer.py", job=job, view=token)
        assert not viewer.exception
        assert any("read-only" in i.value for i in viewer.info)
        assert viewer.session_state["sid"] != owner.session_state["sid"]
        assert not [b for b in viewer.button if b.key == "tr_cancel"]   # cannot cancel
        assert viewer.radio(key="tr_ds").value == "shapes"              # sees what the run trained
        assert [b for b in owner.button if b.key == "tr_cancel"]        # the owner can
        guess = _page("pages/transfer.py", job=job, view="0" * 32)      # a wrong token sees nothing
        assert not any("read-only" in i.value for i in guess.info) and guess.radio(key="tr_ds").value == "digits"
        assert not any(isinstance(getattr(m, "label", None), str) and "step" in m.label for m in guess.metric)
    finally:
        runner().cancel(job)


def test_explorer_a_typed_size_out_of_range_gets_a_message():
    at = _explorer(arch="alexnet")
    at.number_input(key="h_alexnet").set_value(100_000).run()
    assert not at.exception
    assert at.error and "100000x227 is larger than this page analyses (4,096 pixels a side" in at.error[0].value
    assert at.number_input(key="h_alexnet").value == 100_000          # what the box shows is what is refused
    at.button[0].click().run()                                       # "Reset to the default size"
    assert not at.error and at.metric[0].value == "62,378,344"


def test_explorer_bad_links_fall_back_with_a_warning():
    at = _explorer(arch="nosuchnet", size="3x99999x2", layer="500")
    assert not at.exception
    assert at.warning and "unknown architecture" in at.warning[0].value
    assert at.session_state["arch"] == "alexnet"
    assert at.session_state["layer"] == 22            # clamped to the last layer
    assert at.metric[0].value == "62,378,344"         # the default size, not 99999
    at = _explorer(arch="resnet18", size="3x99999x2")
    assert "at most 4096" in at.warning[0].value and at.session_state["h_resnet18"] == 224


def test_quiz_checks_the_answer():
    at = _explorer(arch="alexnet", layer="0", quiz="1")
    assert "34,944" not in _text(at)           # hidden until answered
    assert not any("55x55x96" in c.value for c in at.caption)
    # nor does any other view give it away: no diagram, chart or table while the question is open
    assert not at.get("graphviz_chart") and not at.get("plotly_chart")
    assert [list(d.value.columns) for d in at.dataframe] == [["part", "bytes", "size"]]   # training memory only
    assert sum("opens once you check your answer" in i.value for i in at.info) == 4
    assert "96 filters 11x11, stride 4, padding 0" in _text(at)
    at.text_input(key="quiz_a_0").input("55x55x96")
    form_submit = next(b for b in at.button if b.label == "Check")
    form_submit.click().run()
    assert at.session_state["quiz_score"] == [1, 1]
    assert "34,944" in _text(at)               # revealed with the arithmetic
    assert any("Correct" in s.value for s in at.success)
    assert at.get("graphviz_chart") and at.get("plotly_chart") and len(at.dataframe) == 3   # the views are back


def test_csv_download_and_block_view_for_a_deep_network():
    at = _explorer(arch="resnet152")
    assert not at.exception
    frames = at.dataframe
    assert any(len(f.value) == 464 for f in frames)      # the full table, one row per layer call
    assert any(len(f.value) < 60 for f in frames)        # the block view is much shorter


@pytest.mark.parametrize("name", every())
def test_explorer_renders_every_architecture(name):
    at = _explorer(arch=name, layer="1", quiz="1")
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error
    assert at.session_state["arch"] == name


def test_switching_architecture_resets_the_layer_and_updates_the_url():
    at = _explorer(arch="alexnet", layer="16")
    at.selectbox(key="arch").set_value("vgg16").run()
    assert not at.exception
    assert at.session_state["layer"] == 0
    assert at.query_params["arch"] == "vgg16" and at.query_params["layer"] == "0"
    assert at.metric[0].value == "138,357,544"


def _page(path: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(path)
    return at.run()


def test_design_lab_opens_on_the_slides_numbers():
    at = _page("pages/design.py")
    assert not at.exception
    text = _text(at)
    assert "10,275" in text and "86,400" in text and "675 + 9,600" in text
    assert "112.9M" in text and "5.3M" in text
    assert "**81**" in text and "**147**" in text
    assert "51,380,224" in text


def test_design_lab_inputs_update_the_numbers():
    at = _page("pages/design.py")
    at.radio(key="sep_preset").set_value("Your own").run()
    at.number_input(key="sep_m").set_value(32).run()
    at.number_input(key="sep_n").set_value(64).run()
    at.number_input(key="sep_dk").set_value(3).run()
    at.number_input(key="sep_df").set_value(10).run()
    assert "1,843,200" in _text(at)  # 3*3*32*64*10*10
    at.number_input(key="s_n").set_value(2).run()
    assert "3 → 5 pixels" in _text(at)


def test_design_lab_stack_from_a_link_marks_bad_rows():
    at = _page("pages/design.py", stack="conv:64:3:1:1:1:1;conv:30:3:1:1:1:4;maxpool:0:2:2:0:1:1")
    assert not at.exception
    assert any("Row 1" in e.value and "groups=4" in e.value for e in at.error)
    at = _page("pages/design.py", stack="garbage")
    assert any("Ignored the stack" in w.value for w in at.warning)


def test_design_lab_effective_receptive_field_runs():
    at = _page("pages/design.py")
    at.selectbox(key="erf_arch").set_value("resnet18").run()
    at.radio(key="erf_src").set_value("sample photos (scikit-image)").run()
    at.button(key="erf_go").click().run()
    assert at.session_state["erf_result_job"]             # a job in a worker, not the page's thread
    _until_result(at, "erf_result")
    assert not at.exception
    assert any("random initialisation" in c.value for c in at.caption)
    assert any("95% of the gradient" in i.value for i in at.info)
    at.selectbox(key="erf_w_resnet18").set_value("starter").run()       # the weights we ship, offline
    at.button(key="erf_go").click().run()
    _until_result(at, "erf_result")
    assert not at.exception and any("Weights: ConvNet Lab starter weights" in c.value for c in at.caption)
    at.selectbox(key="erf_arch").set_value("vgg16").run()
    assert not any("starter" in str(o) for o in at.selectbox(key="erf_w_vgg16").options)   # a ResNet-18 only


def _rss_mb() -> float:
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines()
                    if l.startswith("VmRSS")).split()[1]) / 1024


def _until(pred, timeout: float) -> bool:
    end = time.time() + timeout
    while not pred() and time.time() < end:
        time.sleep(0.1)
    return pred()


def _until_result(at: AppTest, key: str, timeout: float = 240) -> AppTest:
    """Reruns the page until the computation job behind `key` has left its result (AppTest does not
    tick run_every fragments)."""
    return rerun_until(at, lambda a: f"{key}_job" not in a.session_state, timeout)


def test_model_zoo_table_and_latency_and_huge_models_refused_on_a_cpu():
    """The timing runs as a job in a worker (queued with the training runs, cancellable): the page shows
    its progress, then the figures. vit_h_14 (1,017 GMACs at 518 px) would hold the CPU's one job
    slot for minutes: refused with a reason, the small model beside it is timed (one measurement
    shows both, as a user asking for both gets)."""
    at = _page("pages/zoo.py")
    assert not at.exception
    assert len(at.dataframe[0].value) >= 80
    at.multiselect(key="zoo_lat_models").set_value(["vit_h_14", "squeezenet1_1"]).run()
    assert any("Not timed on this CPU: vit_h_14 (1,017 GMACs)" in w.value for w in at.warning)
    at.button(key="zoo_lat_go").click().run()
    assert not at.exception
    assert at.session_state["zoo_latency_job"] and [b for b in at.button if b.key == "zoo_latency_cancel"]
    assert at.button(key="zoo_lat_go").disabled                # one measurement at a time
    _until_result(at, "zoo_latency")
    assert not at.exception
    lat = at.dataframe[-1].value
    assert list(lat["name"]) == ["squeezenet1_1"]
    import re

    for col in ("batch 1 (ms)", "batch 32 (ms)"):          # "median (fastest-slowest)"
        med, lo, hi = map(float, re.fullmatch(r"([\d.e+]+) \(([\d.e+]+)-([\d.e+]+)\)", lat[col].iloc[0]).groups())
        assert 0 < lo <= med <= hi
    r = at.session_state["zoo_latency"][0]
    assert r.batch1.runs == 5 and r.batch1.lo <= r.batch1.median <= r.batch1.hi
    assert any("5 timed runs after 2 warm-up runs" in c.value for c in at.caption)
    at.multiselect(key="zoo_lat_models").set_value(["vit_h_14"]).run()
    assert not at.exception and any("vit_h_14" in w.value for w in at.warning)
    assert at.button(key="zoo_lat_go").disabled


def test_model_zoo_measurement_cancelled_ends_its_worker_and_frees_its_memory():
    """VGG-19's weights alone are 548 MB: while it is timed they sit in a worker, never in the server;
    Cancel ends the worker within seconds, and the memory goes back with the process."""
    from pages.common import runner

    def rss_mb(pid: int) -> float:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            return int(next(l for l in status if l.startswith("VmRSS")).split()[1]) / 1024
        except (OSError, StopIteration):      # ended (a zombie has no VmRSS)
            return 0.0

    def parent(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

    at = _page("pages/zoo.py")
    at.multiselect(key="zoo_lat_models").set_value(["vgg19"]).run()
    before = _rss_mb()
    at.button(key="zoo_lat_go").click().run()
    job = at.session_state["zoo_latency_job"]
    assert _until(lambda: runner()._jobs[job].process is not None, 30)
    worker = runner()._jobs[job].process.pid
    # The fork server it came from (torch, captum, scikit-learn imported) holds about 650 MB; the
    # worker timing VGG-19 holds its 548 MB of weights more (and batch-32 activations).
    fork_server = parent(worker)
    assert fork_server != os.getpid()
    assert _until(lambda: rss_mb(worker) > rss_mb(fork_server) + 500, 120), (rss_mb(worker), rss_mb(fork_server))
    at.button(key="zoo_latency_cancel").click().run()         # the model lives in the worker process...
    # a quick cancel is already over in the click's own run, which then shows its outcome (once)
    said = any("Cancelled" in w.value for w in at.warning)
    t = time.time()
    while time.time() - t < 15 and runner().status(job).state == "running":
        time.sleep(0.1)
    # a second or two when the machine is idle; the bound leaves room for a second test worker's load
    assert runner().status(job).state == "cancelled" and time.time() - t < 10
    assert _until(lambda: rss_mb(worker) == 0, 10)       # ...which has ended
    assert _rss_mb() - before < 300                       # and the server never held it
    if not said:
        at.run()
        said = any("Cancelled" in w.value for w in at.warning)
    assert said and "zoo_latency" not in at.session_state and "zoo_latency_job" not in at.session_state


def test_inside_the_network_alexnet_and_zfnet_first_layers_side_by_side():
    at = _page("pages/inside.py")
    at.selectbox(key="in_arch").set_value("zfnet").run()
    assert not at.exception
    text = " ".join(str(c.proto) for c in at.get("image"))                 # the image captions
    assert "AlexNet (torchvision): 64 filters 11x11, stride 4" in text and "ZFNet: 96 filters 7x7, stride 2" in text
    assert any("AlexNet -> ZFNet" in h.value for h in at.subheader)


def test_inside_the_network_download_button_offline_says_why_and_keeps_the_page():
    """No network here (only the package registries): the button tries torchvision's real URL and
    says what failed and what to do; nothing half-written is left in the cache."""
    from core.weights import cache_path, default_weights

    at = _page("pages/inside.py")
    at.radio(key="in_weights").set_value("ImageNet (when cached)").run()
    button = at.button(key="in_download")
    assert button.label == "Download them now (44.7 MB)"
    button.click().run()
    assert not at.exception
    err = next(e.value for e in at.error if e.value.startswith("No download"))
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err and "copy that file" in err
    path = cache_path(default_weights("resnet18"))
    assert not path.exists() and not path.with_name(path.name + ".part").exists()
    assert any(m.label == "Exact zeros" for m in at.metric)                  # the page is still all there


def test_inside_the_network_offers_the_starter_weights_without_imagenet_classes():
    at = _page("pages/inside.py")
    at.radio(key="in_weights").set_value("starter weights (ResNet-18, ours)").run()
    assert not at.exception
    assert any("ConvNet Lab starter weights" in c.value for c in at.caption)
    assert any("No top-5 predictions" in c.value for c in at.caption)
    assert not any(h.value == "Top-5 predictions" for h in at.subheader)
    assert not any("tench" in str(o) for o in at.selectbox(key="in_target_resnet18").options)   # no ImageNet names
    at.selectbox(key="in_arch").set_value("alexnet").run()
    at.radio(key="in_weights").set_value("starter weights (ResNet-18, ours)").run()   # chosen for AlexNet
    assert not at.exception and any("The starter weights are a ResNet-18" in i.value for i in at.info)


def test_inside_the_network_top_patches_of_a_channel():
    at = _page("pages/inside.py")
    at.radio(key="in_weights").set_value("random initialisation").run()
    at.selectbox(key="in_top_layer_resnet18").set_value("layer1.0").run()
    at.number_input(key="in_top_ch_resnet18_layer1.0").set_value(7).run()
    at.button(key="in_top_go").click().run()
    assert not at.exception
    _, _, layer, ch, n, found, names = at.session_state["top_result"]
    assert (layer, ch, n, len(found)) == ("layer1.0", 7, 8, 9)
    assert all(p.pixels.shape[:2] == p.projection.shape == (p.box[2], p.box[2]) for p in found)
    assert any("the 9 strongest places in 8 images" in m.value for m in at.markdown)
    text = " ".join(str(c.proto) for c in at.get("image"))
    assert "the patches" in text and "their deconvnet projections" in text    # two grids, as in the paper
    at.button(key="in_unit_go").click().run()                   # one unit: deconvnet vs guided backprop
    assert not at.exception
    _, layer, ch, uv = at.session_state["unit_result"]
    side = uv.box[2]
    assert (layer, ch) == ("layer1.0", 7) and [p.shape for _, p, _ in uv.projections] == [(side, side)] * 2
    assert all(float(p.max()) == 1.0 and secs > 0 for _, p, secs in uv.projections)
    text = " ".join(str(c.proto) for c in at.get("image"))
    assert "its field on your image" in text and f"the field, {side}x{side}" in text
    assert "deconvnet, " in text and "guided backprop, " in text
    assert any(f"layer1.0 channel 7: its strongest unit, at ({uv.row}, {uv.col})" in c.value for c in at.caption)


def test_inside_opens_resnet18_on_the_starter_weights_when_imagenet_is_not_cached(monkeypatch, tmp_path):
    """A fresh machine (an empty $TORCH_HOME): ResNet-18 opens on the starter weights that ship with the
    dashboard, as the Studio starts from them, and the page says why; not on random noise. Until the
    user picks, the weights follow the architecture; a choice then sticks."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    at = _page("pages/inside.py")
    assert not at.exception
    assert at.radio(key="in_weights").value == "starter weights (ResNet-18, ours)"
    assert any("not cached on this machine, so this page opens on the starter weights" in i.value for i in at.info)
    assert any(c.value.startswith("ResNet-18 with ConvNet Lab starter weights") for c in at.caption)
    assert any("Trained filters show oriented edges" in str(i.proto) for i in at.get("image"))   # not noise
    at.selectbox(key="in_arch").set_value("alexnet_torchvision").run()      # no starter weights for AlexNet
    assert at.radio(key="in_weights").value == "ImageNet (when cached)"
    assert any("not cached" in w.value for w in at.warning) and not any("opens on the starter" in i.value
                                                                          for i in at.info)
    at.selectbox(key="in_arch").set_value("resnet18").run()
    assert at.radio(key="in_weights").value == "starter weights (ResNet-18, ours)"
    at.radio(key="in_weights").set_value("random initialisation").run()    # the user's choice sticks
    at.selectbox(key="in_arch").set_value("alexnet_torchvision").run()
    at.selectbox(key="in_arch").set_value("resnet18").run()
    assert at.radio(key="in_weights").value == "random initialisation" and not at.exception


@pytest.fixture(scope="module")
def studio_runs(tmp_path_factory):
    """Two real Studio runs: scenario 1 from the starter weights (its download is the head alone and
    the model card) and a fine-tuned ResNet-18 (the whole model, 44.8 MB, and the card)."""
    from tests.studio_downloads import studio_download

    head, whole = tmp_path_factory.mktemp("head"), tmp_path_factory.mktemp("whole")
    return {"head": (head, studio_download(head, "1", "starter")),
            "whole": (whole, studio_download(whole, "finetune", "random"))}


def _upload_weights(files: dict[str, bytes]) -> AppTest:
    at = _page("pages/inside.py")
    radio = at.radio(key="in_weights")
    radio.set_value(next(o for o in radio.options if o.startswith("upload"))).run()
    at.file_uploader(key="in_wfile").set_value([(n, d, "application/octet-stream") for n, d in files.items()]).run()
    return at


def _top5_against(at: AppTest, res) -> None:
    """The page's top-5 table against the run's own trained model (the one `fit` returned, not one read
    back from the files) on the page's input, the sample photo as ImageNet's transforms prepare it."""
    from core.images import preprocess, sample_image

    table = next(d.value for d in at.dataframe if "probability" in d.value.columns)
    with torch.no_grad():
        p = torch.softmax(res.model.eval()(preprocess(sample_image("astronaut"), 256, 224).tensor)[0], 0)
    order = p.argsort(descending=True).tolist()
    assert list(table["class"]) == order and list(table["name"]) == [res.classes[i] for i in order]
    assert all(abs(a - float(p[i])) < 1e-4 for a, i in zip(table["probability"], order))


def test_inside_loads_a_studio_head_with_its_model_card(studio_runs):
    """The Studio's default download (scenario 1) is the head and model.json: Inside rebuilds the encoder
    from the weights the card names (the starter weights), checks its digest, and puts the head on it."""
    folder, res = studio_runs["head"]
    files = {n: (folder / n).read_bytes() for n in ("head.safetensors", "model.json")}
    at = _upload_weights(files)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("your weights (head.safetensors with model.json: a head on ConvNet Lab starter weights" in c.value
               and "3 classes" in c.value for c in at.caption)
    assert any(h.value == "Top-5 predictions (your run's classes)" for h in at.subheader)
    table = next(d.value for d in at.dataframe if "probability" in d.value.columns)
    assert sorted(table["name"]) == sorted(res.classes)
    _top5_against(at, res)


def test_inside_refuses_a_head_whose_encoder_is_not_the_one_it_was_trained_on(studio_runs):
    import json

    folder, _ = studio_runs["head"]
    card = json.loads((folder / "model.json").read_text())
    card["encoder_sha256"] = "0" * 64                          # another encoder than the one this head learnt on
    at = _upload_weights({"head.safetensors": (folder / "head.safetensors").read_bytes(),
                          "model.json": json.dumps(card).encode()})
    assert not at.exception
    err = next(e.value for e in at.error)
    assert err.startswith("Refused: head.safetensors is a head trained on an encoder with ConvNet Lab starter")
    assert "encoder_sha256" in err and "would read other features" in err
    assert any(c.value == "ResNet-18 with random initialisation." for c in at.caption)   # the page goes on


@pytest.mark.parametrize("files,said", [
    ({"head.safetensors": None}, "holds only a classifier head"),
    ({"head.safetensors": None, "model.json": b"{not json"}, "model.json is not JSON"),
    ({"head.safetensors": None, "model.json": b'{"arch": "resnet18"}'}, "model.json is not a Studio model card"),
    ({"model.json": None}, "upload its weights"),
    ({"head.safetensors": b"\x00" * 64, "model.json": None}, "Cannot read head.safetensors"),
    ({"model.safetensors": None}, "has a classifier for 3 classes, not ImageNet's 1000"),
])
def test_inside_says_what_is_wrong_with_an_upload_and_never_shows_a_traceback(studio_runs, files, said):
    folder = studio_runs["head"][0]
    real = {**{n: (folder / n).read_bytes() for n in ("head.safetensors", "model.json")},
            "model.safetensors": (studio_runs["whole"][0] / "model.safetensors").read_bytes()}
    at = _upload_weights({n: real[n] if d is None else d for n, d in files.items()})
    assert not at.exception
    assert any(said in e.value for e in at.error), [e.value for e in at.error]


def test_inside_takes_a_whole_fine_tuned_resnet18_of_45_mb(studio_runs):
    """A fine-tuned ResNet-18 is 44.8 MB: the uploader and the server (server.maxUploadSize, which caps
    every upload) take it, and with its model card it loads with the run's classes."""
    import tomllib

    folder, res = studio_runs["whole"]
    data = (folder / "model.safetensors").read_bytes()
    size_mb = len(data) / 2**20                               # Streamlit's MB
    assert size_mb > 40
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["maxUploadSize"] >= size_mb
    at = _upload_weights({"model.safetensors": data, "model.json": (folder / "model.json").read_bytes()})
    assert at.file_uploader(key="in_wfile").proto.max_upload_size_mb >= size_mb
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("your weights (model.safetensors with model.json: the whole fine-tuned model, 3 classes)" in c.value
               for c in at.caption)
    _top5_against(at, res)
    at.radio(key="in_src").set_value("upload").run()           # images keep their own limit (core.images)
    from core.images import MAX_BYTES

    assert at.file_uploader(key="in_upload").proto.max_upload_size_mb == MAX_BYTES // 2**20


def test_inside_the_network_feature_maps_filters_and_attributions():
    at = _page("pages/inside.py")
    assert not at.exception
    at.radio(key="in_weights").set_value("ImageNet (when cached)").run()
    assert any("not cached" in w.value and "prefetch resnet18" in w.value for w in at.warning)
    assert any(m.label == "Exact zeros" for m in at.metric)
    at.radio(key="in_src").set_value("test pattern").run()
    at.selectbox(key="in_pattern").set_value("gratings").run()
    at.selectbox(key="in_arch").set_value("alexnet").run()
    assert not at.exception
    at.multiselect(key="in_methods").set_value(["Saliency", "Grad-CAM"]).run()
    at.button(key="in_attr_go").click().run()
    assert not at.exception
    assert "attr_result" in at.session_state
    methods = [m for m, _, _ in at.session_state["attr_result"][3]]
    assert methods == ["Saliency", "Grad-CAM"]


def test_transfer_studio_runs_a_tiny_job(monkeypatch):
    at = _page("pages/transfer.py")
    assert not at.exception
    # ImageNet weights are not here: the default start is the starter weights we ship, and it says why
    assert at.radio(key="tr_w").value == "starter"
    assert any("ImageNet weights are not cached on this machine, so the Studio starts from these" in c.value
               for c in at.sidebar.caption)
    at.radio(key="tr_w").set_value("imagenet").run()
    assert any("not cached" in w.value and "starts from random weights" in w.value for w in at.warning)
    at.radio(key="tr_ds").set_value("shapes").run()
    at.slider(key="tr_shn").set_value(10).run()
    at.radio(key="tr_scenario").set_value("3").run()
    at.button(key="tr_go").click().run()
    assert not at.exception and not at.error
    sid = at.session_state["sid"]
    assert at.query_params["sid"] == sid and at.query_params["job"] == at.session_state["tr_job"]
    rerun_until(at, lambda a: any(m.label == "Validation accuracy" for m in a.metric), 60)
    assert any(m.label == "Validation accuracy" for m in at.metric), [s.value for s in at.success]
    runs = at.dataframe[-1].value
    assert list(runs["state"]) == ["done"] and 0 <= runs["val accuracy"].iloc[0] <= 1
    _every_page_takes_a_run_of_another_kind(sid, at.query_params["job"], "pages/transfer.py")
    # a reload (a new session with the same URL) finds the run again
    again = _page("pages/transfer.py", sid=sid)
    assert list(again.dataframe[-1].value["run"]) == list(runs["run"])
    # and so does a restarted server: a new runner on the same results folder (the job store)
    from pages.common import _runner, runner

    old = runner()
    # the results folder the old runner keeps its runs in (runs/ under it): the process's runner may have
    # been made while another module pointed CONVNETLAB_RESULTS elsewhere (test_lecture's prepared folder)
    monkeypatch.setenv("CONVNETLAB_RESULTS", str(Path(old.root).parent))
    _runner.clear()
    try:
        restarted = _page("pages/transfer.py", sid=sid)
        assert runner() is not old
        assert list(restarted.dataframe[-1].value["run"]) == list(runs["run"])
        assert any(m.label == "Validation accuracy" for m in restarted.metric)   # its results, read from disk
    finally:
        old.shutdown()


def test_a_runner_that_cannot_start_is_said_on_the_page(monkeypatch):
    """CONVNETLAB_RUNNER=ray with nothing listening at RAY_ADDRESS: the Studio says why it cannot
    train, no traceback; the runner is tried again on the next visit (nothing cached)."""
    from pages.common import _runner

    old = _runner()
    _runner.clear()
    monkeypatch.setenv("CONVNETLAB_RUNNER", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    try:
        at = _page("pages/transfer.py")
        assert not at.exception
        assert any("not available on this server" in e.value and "no Ray cluster could be reached" in e.value
                   for e in at.error)
    finally:
        monkeypatch.delenv("CONVNETLAB_RUNNER")
        _runner.clear()
        old.shutdown()


def test_design_lab_depthwise_timing_shows_its_spread():
    at = _page("pages/design.py")
    at.multiselect(key="sep_ch").set_value([32, 256]).run()
    at.number_input(key="sep_batch").set_value(1).run()
    at.button(key="sep_go").click().run()
    _until_result(at, "sep_result")
    assert not at.exception
    res = at.session_state["sep_result"]
    table = next(d.value for d in at.dataframe if "time ratio" in d.value.columns)
    for t, shown in zip(res, table["time ratio"]):
        # a ratio only where the runs do not overlap, with its range; otherwise said
        assert shown == (f"{t.time_ratio:.2f} ({t.ratio_range[0]:.2f}-{t.ratio_range[1]:.2f})" if t.clear
                         else "unclear: the runs overlap")
    unclear = [t for t in res if not t.clear]
    assert any("timings overlap" in w.value for w in at.warning) == bool(unclear)
    measured = next(c.proto.spec for c in at.get("plotly_chart") if "time ratio (measured" in c.proto.spec or "MAC ratio (theory)" in c.proto.spec)
    assert ('"error_y"' in measured) == any(t.clear for t in res)


def test_transfer_studio_switches_the_start_for_an_encoder_the_starter_weights_do_not_fit(monkeypatch, tmp_path):
    """The starter weights are a ResNet-18. Choosing MobileNet v3 with them selected switches the start to
    what MobileNet can use (ImageNet's when cached, else random), says so in one line and keeps Train
    enabled; back on ResNet-18 the starter weights return."""
    from core.weights import cache_path, default_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))            # nothing cached
    at = _page("pages/transfer.py")
    assert at.radio(key="tr_w").value == "starter"
    at.selectbox(key="tr_arch").set_value("mobilenet_v3_small").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.radio(key="tr_w").value == "random" and not at.button(key="tr_go").disabled
    said = [c.value for c in at.sidebar.caption if "starter weights are a ResNet-18" in c.value]
    assert said == [("The starter weights are a ResNet-18, so MobileNet v3 Small starts from random weights "
                     "(ImageNet's are not cached here).")]
    at.selectbox(key="tr_arch").set_value("resnet18").run()
    assert at.radio(key="tr_w").value == "starter"
    assert not any("starter weights are a ResNet-18" in c.value for c in at.sidebar.caption)
    path = cache_path(default_weights("mobilenet_v3_large"))    # ImageNet's file where torchvision looks
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    at.selectbox(key="tr_arch").set_value("mobilenet_v3_large").run()
    assert at.radio(key="tr_w").value == "imagenet" and not at.error and not at.warning
    assert any(c.value == "The starter weights are a ResNet-18, so MobileNet v3 Large starts from ImageNet weights."
               for c in at.sidebar.caption)
    at.radio(key="tr_w").set_value("random").run()              # the user's own choice: no note, kept
    at.selectbox(key="tr_arch").set_value("resnet18").run()
    assert at.radio(key="tr_w").value == "random"
    assert not any("starter weights are a ResNet-18" in c.value for c in at.sidebar.caption)


def test_transfer_studio_says_when_a_run_has_too_few_steps():
    """10 labels per class of digits = 100 training images: 5 epochs at batch 64 make 10 steps."""
    import math

    at = _page("pages/transfer.py")
    assert not any("training steps" in i.value for i in at.info)          # all labels: enough steps
    at.select_slider(key="tr_lpc").set_value(10).run()
    hint = next(i.value for i in at.info if "training steps" in i.value)
    epochs, batch = at.slider(key="tr_ep").value, at.select_slider(key="tr_bs").value
    assert f"Only {epochs * math.ceil(100 / batch)} training steps" in hint and "10 epochs at batch 32" in hint
    at.slider(key="tr_ep").set_value(10).run()
    at.select_slider(key="tr_bs").set_value(32).run()
    assert not any("training steps" in i.value for i in at.info)          # 10 x 4 = 40 steps


def test_transfer_studio_reload_mid_run_restores_the_runs_sidebar():
    """A shapes fine-tune started, then the page reloaded (a new session on the same URL) while it
    runs: the sidebar shows that run's settings, not the defaults (digits / scenario 1)."""
    at = _page("pages/transfer.py")
    at.radio(key="tr_ds").set_value("shapes").run()
    at.slider(key="tr_shc").set_value(3).run()
    at.slider(key="tr_shn").set_value(40).run()
    at.radio(key="tr_w").set_value("random").run()
    at.radio(key="tr_scenario").set_value("finetune").run()
    at.slider(key="tr_ep").set_value(7).run()
    at.select_slider(key="tr_bs").set_value(16).run()
    at.button(key="tr_go").click().run()
    assert not at.exception and not at.error
    sid, job = at.session_state["sid"], at.session_state["tr_job"]
    again = _page("pages/transfer.py", sid=sid, job=job)
    try:
        assert not again.exception
        assert again.radio(key="tr_ds").value == "shapes" and again.radio(key="tr_scenario").value == "finetune"
        assert again.radio(key="tr_w").value == "random"
        assert (again.slider(key="tr_shc").value, again.slider(key="tr_shn").value) == (3, 40)
        assert (again.slider(key="tr_ep").value, again.select_slider(key="tr_bs").value) == (7, 16)
        assert not any("sidebar has changed" in c.value for c in again.caption)
        fresh = _page("pages/transfer.py")                      # no link: the defaults
        assert fresh.radio(key="tr_ds").value == "digits" and fresh.radio(key="tr_scenario").value == "1"
    finally:
        from pages.common import runner

        runner().cancel(job)


def test_transfer_studio_offline_torchvision_dataset_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNETLAB_DATA", str(tmp_path))
    at = _page("pages/transfer.py")
    at.radio(key="tr_ds").set_value("cifar10").run()
    assert any("not on this machine yet" in i.value for i in at.info)
    at.radio(key="tr_scenario").set_value("3").run()
    at.button(key="tr_go").click().run()
    rerun_until(at, lambda a: any("The run failed" in e.value for e in a.error), 60)
    assert any("The run failed" in e.value and "CIFAR-10" in e.value and "network" in e.value for e in at.error)
    assert not at.exception


def test_the_lr_finders_use_button_sets_the_peak_lr_the_next_run_uses():
    at = _page("pages/transfer.py")
    at.radio(key="tr_ds").set_value("shapes").run()
    at.slider(key="tr_shn").set_value(10).run()
    at.radio(key="tr_w").set_value("random").run()
    at.selectbox(key="tr_arch").set_value("mobilenet_v3_small").run()
    at.button(key="tr_lrfind").click().run()
    rerun_until(at, lambda a: any(b.key == "tr_use_lr" for b in a.button), 120)
    use = at.button(key="tr_use_lr")
    suggested = float(use.label.split()[1])
    assert any("LR finder finished" in s.value for s in at.success)
    use.click().run()
    box = next(n for n in at.number_input if n.label.startswith("Peak learning rate"))
    assert box.value == pytest.approx(suggested) and suggested != pytest.approx(3e-3)
    at.button(key="tr_go").click().run()
    job = at.session_state["tr_job"]
    rerun_until(at, lambda a: any(m.label == "Validation accuracy" for m in a.metric) or bool(a.error), 60)
    runs = at.dataframe[-1].value.set_index("run")
    assert runs.loc[job, "peak LR"] == pytest.approx(suggested)   # what the run really used


def _lab_run(at: AppTest, timeout_s: float = 240) -> AppTest:
    at.button(key="lab_go").click().run()
    return rerun_until(at, lambda a: bool(a.success or a.error), timeout_s)


def _every_page_takes_a_run_of_another_kind(sid: str, job: str, own: str, view: str | None = None) -> None:
    """Every page opened in the session (and with the link) of a run of another page: no
    exception; the training page that does not own the run says where it belongs."""
    extra = {"view": view} if view else {}
    for page in PAGES:
        at = _page(page, sid=sid, job=job, **extra)
        assert not at.exception, (page, [e.value for e in at.exception])
        if page in ("pages/transfer.py", "pages/lab.py") and page != own:
            assert any("not a run of this page" in i.value for i in at.info), page


def test_lab_autoencoder_runs_from_a_deep_link_and_shows_its_code_space():
    at = _page("pages/lab.py", task="autoencoder", bottleneck="2", epochs="1")
    assert at.select_slider(key="ae_bottleneck").value == 2 and at.slider(key="ae_epochs").value == 1
    _lab_run(at)
    assert any("Done: bottleneck 2" in s.value for s in at.success), [e.value for e in at.error]
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("code itself" in t for t in titles) and any("training loss per step" in t for t in titles)
    assert at.query_params["task"] == "autoencoder" and at.query_params["bottleneck"] == "2"
    sid, job = at.session_state["sid"], at.query_params["job"]
    again = _page("pages/lab.py", task="autoencoder", sid=sid, job=job)   # a reload finds the run
    assert any("Done: bottleneck 2" in s.value for s in again.success)
    # the owner's read-only share link: another session sees the run and its results, nothing to cancel
    share = next(c.value for c in at.code if "view=" in c.value)
    assert share.startswith(f"/lab?task=autoencoder&job={job}&view=")
    viewer = _page("pages/lab.py", task="autoencoder", job=job, view=share.split("view=")[1])
    assert viewer.session_state["sid"] != sid and any("read-only" in i.value for i in viewer.info)
    assert any("Done: bottleneck 2" in s.value for s in viewer.success)
    assert not [b for b in viewer.button if b.key == "lab_cancel"] and not [c for c in viewer.code if "view=" in c.value]
    guess = _page("pages/lab.py", task="autoencoder", job=job, view="0" * 32)   # a wrong token sees nothing
    assert not any("Done" in s.value for s in guess.success) and not any("read-only" in i.value for i in guess.info)
    _every_page_takes_a_run_of_another_kind(sid, job, "pages/lab.py")
    _every_page_takes_a_run_of_another_kind(_page("pages/home.py").session_state["sid"], job, "pages/lab.py",
                                            view=share.split("view=")[1])          # the share link, elsewhere


def test_lab_unet_tiny_run_reports_both_networks():
    at = _page("pages/lab.py", task="unet", images="100", size="16", epochs="1")
    _lab_run(at)
    assert any(s.value.startswith("Done: IoU") for s in at.success), [e.value for e in at.error]
    from pages.common import runner

    final = runner().results(at.query_params["job"]).final
    shown = {m.label: (m.value, m.delta) for m in at.metric}
    for label, key in (("whole mask", "iou"), ("blobs", "blob_iou"), ("thin curves", "thin_iou")):
        u, a = final["unet"][key], final["autoencoder"][key]
        assert shown[f"U-Net IoU, {label}"] == (f"{u:.2f}", f"{u - a:+.2f}")     # U-Net's, and its lead


@pytest.mark.parametrize("params,said", [({"lr": "5"}, "lr must be"), ({"bottleneck": "0"}, "bottleneck must be"),
                                         ({"epochs": "x" * 5000}, "epochs=xxxx"), ({"noise": "nan"}, "noise")])
def test_lab_ignores_link_values_the_task_cannot_take(params, said):
    at = _page("pages/lab.py", task="autoencoder", **params)
    assert not at.exception
    assert any("Ignored from the link" in w.value and said in w.value for w in at.warning)
    assert not at.button(key="lab_go").disabled     # the defaults stand in


@pytest.mark.parametrize("task,params", [
    ("autoencoder", {"lr": "0.000005"}), ("unet", {"lr": "0.000005"}), ("siamese", {"lr": "0.000005"}),
    ("depth", {"lr": "0.00005"}), ("siamese", {"epochs": "100"}), ("siamese", {"batch_size": "1024"}),
    ("depth", {"per_class": "2000", "data": "shapes"}), ("siamese", {"characters": "1000", "unseen": "998"}),
    ("unet", {"images": "20000"}), ("depth", {"depths": "8,110"}), ("siamese", {"ways": "5,7", "unseen": "7"})])
def test_a_link_value_the_task_accepts_is_shown_by_its_widget(task, params):
    """Every value a task's Config accepts fits the widget that shows it (the knobs are the same):
    no crash, no clamping, no silent change."""
    at = _page("pages/lab.py", task=task, **params)
    assert not at.exception and not any("Ignored from the link" in w.value for w in at.warning)
    shown = {}
    for kind in ("slider", "number_input", "select_slider", "radio", "multiselect", "toggle"):
        for w in getattr(at, kind):
            if w.key and w.key.startswith(("ae_", "un_", "sia_", "dp_")):
                shown[w.key.split("_", 1)[1]] = w.value
    for name, raw in params.items():
        value = shown["ways_" + params["unseen"]] if name == "ways" else shown[name]
        if name in ("ways", "depths"):
            assert ",".join(str(v) for v in sorted(value)) == raw == at.query_params[name]
        else:
            assert type(value)(raw) == value == type(value)(at.query_params[name]), (name, raw, value)


@pytest.mark.parametrize("task,params,kept,said", [
    ("siamese", {"epochs": "1000"}, {}, "epochs must be a whole number from 1 to 200"),
    ("unet", {"images": "30000", "epochs": "3"}, {"epochs": "3"}, "images must be"),
    ("siamese", {"data": "digits", "unseen": "30"}, {"unseen": "30"}, "unseen must be")])
def test_a_link_value_the_task_refuses_is_named_and_dropped_from_the_address(task, params, kept, said):
    at = _page("pages/lab.py", task=task, **params)
    assert not at.exception
    notes = [w.value for w in at.warning if "Ignored from the link" in w.value]
    assert notes and any(said in n for n in notes)
    for name, raw in params.items():
        assert (at.query_params.get(name) == raw) == (name in kept)
        if name not in kept:
            assert any(f"{name}={raw}" in n for n in notes)     # the note names what the link had


def test_lab_link_values_that_only_work_together_are_kept_together():
    at = _page("pages/lab.py", task="siamese", data="digits", unseen="5", ways="5")
    assert not at.exception and not any("Ignored from the link" in w.value for w in at.warning)
    assert at.query_params["data"] == "digits" and at.query_params["unseen"] == "5"


def test_train_on_a_server_whose_results_folder_cannot_be_written_says_so():
    import subprocess

    from pages.common import runner

    at = _page("pages/lab.py", task="autoencoder", epochs="1")
    root = runner().root
    subprocess.run(["chattr", "+i", str(root)], check=True)
    try:
        at.button(key="lab_go").click().run()
    finally:
        subprocess.run(["chattr", "-i", str(root)], check=True)
    assert not at.exception
    assert any(e.value.startswith("This run cannot start: the server cannot save runs") for e in at.error)


def test_the_papers_unet_opens_from_a_link_and_a_diagram_click_keeps_it():
    at = _explorer(arch="unet", o_padding="valid", size="1x572x572", depth="1")
    assert not at.exception and not at.warning and not at.error, [w.value for w in at.warning]
    assert at.metric[0].value == "31,030,658"                      # the paper's network at 572x572
    assert at.session_state["diagram_unet"] == 1                    # the link's diagram depth
    spec = at.get("graphviz_chart")[0].proto.spec
    link = spec[spec.index('href="?') + 6:].split('"')[0]           # a box's link carries the whole view
    assert "o_padding=valid" in link and "size=1x572x572" in link and "depth=1" in link and link.endswith("#step")
