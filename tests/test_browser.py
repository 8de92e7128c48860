"""What only a browser shows: the app started for real, driven in headless Chromium.

In CI (CI=true) a missing Chromium is a failure; elsewhere these tests skip with a message.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.browsers import ARTIFACTS, CLIPPED_JS, IDLE, chromium, module_server, require_chromium


require_chromium()


@pytest.fixture(scope="module")
def server():
    with module_server("streamlit.log") as base:
        yield base


@pytest.fixture(scope="module")
def page(server):
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1400, "height": 2000})


def _wait(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=60_000)


def _slider_to_start(pg, label: str) -> str:
    """Moves the sidebar slider `label` to its first value with the keyboard (Home), as a user can;
    returns the value it shows."""
    slider = pg.locator('[data-testid="stSidebar"] [data-testid="stSlider"]').filter(has_text=label).get_by_role("slider")
    slider.focus()
    pg.keyboard.press("Home")
    _wait(pg)
    return slider.get_attribute("aria-valuetext") or slider.get_attribute("aria-valuenow")


def _tiny_shapes(pg) -> None:
    """The Studio on generated shapes at its smallest: 10 images per class (48 to train on), batch 16, so
    that a run is a few seconds of training (3 steps per epoch), not the default's 600 images."""
    pg.get_by_text("generated shapes & textures").click()
    _wait(pg)
    assert _slider_to_start(pg, "images per class") == "10"
    pg.wait_for_function("document.body.innerText.includes('60 images, 6 classes')", timeout=60_000)


def test_explorer_alexnet_first_layer_from_a_link(server, page):
    """A lecturer's link opened on a fresh server: AlexNet, step to CONV1, see 55x55x96 and 34,944."""
    page.goto(server + "/explorer?arch=alexnet&layer=1")
    _wait(page)
    page.get_by_role("button", name="Previous").click()
    _wait(page)
    page.wait_for_function("document.body.innerText.includes('34,944')", timeout=30_000)
    body = page.inner_text("body")
    assert "conv1: 96 filters 11x11, stride 4, pad 0" in body
    assert "55x55x96" in body and "34,944" in body
    assert "layer=0" in page.url
    # routed through app.py: the sidebar lists our pages, not the files of pages/
    nav = page.inner_text('[data-testid="stSidebarNav"]')
    assert "Architecture Explorer" in nav and "common" not in nav
    page.screenshot(path=str(ARTIFACTS / "explorer-alexnet-conv1.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_design_lab_shows_the_slides_numbers(server, page):
    """Fresh link to the Design Lab: read the slide defaults from the rendered tabs."""
    page.goto(server + "/design")
    _wait(page)
    assert not page.query_selector_all('[role="dialog"]'), "a 'page not found' dialog opened"
    page.get_by_role("tab", name="Depthwise-separable").click()
    page.wait_for_function("document.body.innerText.includes('10,275')", timeout=30_000)
    body = page.inner_text("body")
    assert "86,400" in body and "675 + 9,600 = 10,275" in body
    page.get_by_role("tab", name="1x1 bottleneck").click()
    page.wait_for_function("document.body.innerText.includes('112.9M')", timeout=30_000)
    body = page.inner_text("body")
    assert "5.3M" in body and "112.9M" in body
    page.screenshot(path=str(ARTIFACTS / "design-lab-1x1.png"), full_page=True)
    page.get_by_role("tab", name="Effective receptive field").click()
    page.get_by_role("button", name="Compute the effective receptive field").click()
    page.wait_for_function("document.body.innerText.includes('95% of the gradient')", timeout=120_000)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_inside_upload_an_image_and_a_corrupt_file(server, page, tmp_path):
    """Upload a real PNG: the feature grid appears. Upload a corrupt file: a clear message, no traceback."""
    from PIL import Image

    from core.images import pattern

    good = tmp_path / "blob.png"
    Image.fromarray(pattern("blob")).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    page.goto(server + "/inside")
    _wait(page)
    page.get_by_text("upload", exact=True).click()
    _wait(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(good))
    page.wait_for_function("document.body.innerText.includes('most active first')", timeout=60_000)
    _wait(page)
    body = page.inner_text("body")
    assert "original 256x256" in body and "Exact zeros" in body
    page.screenshot(path=str(ARTIFACTS / "inside-upload.png"), full_page=True)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(bad))
    page.wait_for_function("document.body.innerText.includes('broken.jpg:')", timeout=60_000)
    _wait(page)
    body = page.inner_text("body")
    assert "broken.jpg: " in body and ("truncated" in body or "corrupt" in body or "not an image" in body)
    assert "Still showing your previous image, blob.png" in body and "most active first" in body
    assert not page.query_selector_all('[data-testid="stException"]')


def test_transfer_studio_live_curve_grows_and_accuracy_appears(server, page):
    page.goto(server + "/transfer")
    _wait(page)
    _tiny_shapes(page)
    page.get_by_text("fine-tune (discriminative LRs)").click()
    _wait(page)
    assert _slider_to_start(page, "Batch size") == "16"                 # 3 steps per epoch, 15 in all
    page.get_by_role("button", name="Train").click()
    js = """() => { const p = [...document.querySelectorAll('.js-plotly-plot')]
                      .find(el => el.layout && el.layout.annotations &&
                            el.layout.annotations.some(a => a.text === 'training loss per step'));
                    return p ? p.data[0].x.length : 0; }"""
    page.wait_for_function(f"({js})() >= 2", timeout=120_000)
    first = page.evaluate(js)
    page.wait_for_function(f"({js})() > {first}", timeout=120_000)   # the live curve grows
    page.wait_for_function("document.body.innerText.includes('Validation accuracy')", timeout=240_000)
    _wait(page)
    body = page.inner_text("body")
    assert "Done: validation accuracy" in body and "Confusion matrix" in body
    assert "job=" in page.url and "sid=" in page.url
    page.screenshot(path=str(ARTIFACTS / "transfer-run.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_transfer_studio_folder_upload(server, page, tmp_path):
    from PIL import Image

    from core.images import pattern

    for cls, pat in (("cat", "blob"), ("dog", "checkerboard")):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(pattern(pat, 48)).save(tmp_path / "pets" / cls / f"{i}.png")
    page.goto(server + "/transfer")
    _wait(page)
    page.get_by_text("my images (a folder)").click()
    _wait(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(tmp_path / "pets"))
    page.wait_for_function("document.body.innerText.includes('6 images, 2 classes')", timeout=60_000)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_training_lab_unet_runs_live_and_shows_masks(server, page):
    """The lab through a real server: a deep link, the live curve of both networks, the results."""
    page.goto(server + "/lab?task=unet&images=100&size=16&epochs=2")
    _wait(page)
    assert "U-Net vs autoencoder" in page.inner_text("body")
    page.get_by_role("button", name="Train").click()
    js = """() => { const p = [...document.querySelectorAll('.js-plotly-plot')]
                      .find(el => el.layout && el.layout.annotations &&
                            el.layout.annotations.some(a => a.text === 'training loss per step'));
                    return p ? p.data.map(d => d.name).join('|') : ''; }"""
    page.wait_for_function(f"({js})().includes('unet: train loss')", timeout=180_000)   # both series drawn
    assert "autoencoder: train loss" in page.evaluate(js)
    page.wait_for_function("document.body.innerText.includes('U-Net IoU, thin curves')", timeout=180_000)
    _wait(page)
    body = page.inner_text("body")
    assert "Done: IoU" in body and "job=" in page.url and "task=unet" in page.url
    page.screenshot(path=str(ARTIFACTS / "lab-unet.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_training_lab_autoencoder_shows_reconstructions_and_the_code_space(server, page):
    page.goto(server + "/lab?task=autoencoder&bottleneck=2&epochs=2")
    _wait(page)
    page.get_by_role("button", name="Train").click()
    page.wait_for_function("document.body.innerText.includes('and their reconstructions after epoch 1')",
                           timeout=180_000)                                     # the grid refreshes per epoch
    page.wait_for_function("document.body.innerText.includes('Walking between two digits')", timeout=180_000)
    _wait(page)
    scatter = """() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el.layout && el.layout.title &&
                 String(el.layout.title.text).includes('code itself') && el.data.length === 10)"""
    page.wait_for_function(scatter, timeout=30_000)                             # one trace per digit
    page.screenshot(path=str(ARTIFACTS / "lab-autoencoder.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_training_lab_siamese_and_depth_in_a_browser(server, page):
    """Both twins-and-depth tasks from deep links, trained for real through the server."""
    page.goto(server + "/lab?task=siamese&epochs=2&characters=60&unseen=20&drawers=4&trials=100")
    _wait(page)
    page.get_by_role("button", name="Train").click()
    page.wait_for_function("document.body.innerText.includes('Done: one-shot on 20 unseen classes')",
                           timeout=240_000)
    _wait(page)
    assert "Newcomer" in page.inner_text("body") or "newcomer" in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "lab-siamese.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')
    page.goto(server + "/lab?task=depth&depths=8,14&width=4&data=shapes&per_class=20&size=8&epochs=2")
    _wait(page)
    page.get_by_role("button", name="Train").click()
    page.wait_for_function("document.body.innerText.includes('Done: plain8')", timeout=240_000)
    _wait(page)
    assert "Table 2" in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "lab-depth.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')


PROJECTOR_PAGES = ("/", "/explorer?arch=alexnet", "/explorer?arch=resnet152",
                   "/explorer?arch=inception_module&o_reductions=True&layer=13", "/explorer?arch=unet",
                   "/inside", "/transfer", "/lab", "/lab?task=unet", "/lab?task=siamese", "/lab?task=depth",
                   "/design", "/zoo")


PROJECTOR_SIZES = ((1024, 768), (1280, 720))


def test_every_page_opens_and_reads_whole_at_projector_sizes(server, page):
    """Every page and every tab opens without an exception, and at each projector size no metric,
    button label, select value or tab label is cut off (an element narrower than its text). Each page
    is opened once and its window set to each size in turn, as a lecturer's window moved to the
    projector (the layout is the browser's: the server draws the same page at any size)."""
    clipped, failed, concat = {}, [], ""
    pg = page.context.browser.new_page(viewport=dict(zip(("width", "height"), PROJECTOR_SIZES[0])))
    try:
        for path in PROJECTOR_PAGES:
            pg.goto(server + path)
            _wait(pg)
            if "layer=13" in path:
                concat = pg.inner_text("body")
            tabs = len(pg.query_selector_all('[role="tab"]'))
            for width, height in PROJECTOR_SIZES:
                pg.set_viewport_size({"width": width, "height": height})
                for t in range(max(1, tabs)):
                    if tabs:
                        pg.query_selector_all('[role="tab"]')[t].click()
                        _wait(pg)
                    else:
                        pg.wait_for_timeout(300)          # the page lays itself out at the new size
                    if pg.query_selector_all('[data-testid="stException"]'):
                        failed.append(f"{path} tab {t}")
                    found = pg.evaluate(CLIPPED_JS)
                    if found:
                        clipped[f"{path} at {width}x{height} tab {t}"] = found
                        pg.screenshot(path=str(ARTIFACTS / f"clipped-{width}-{len(clipped)}.png"))
    finally:
        pg.close()
    assert not failed, failed
    assert "128 + 192 + 96 + 64 = 480" in concat                    # the Inception module's concatenation card
    assert not clipped, "\n".join(f"{k}: {v}" for k, v in clipped.items())


# Every image of the visible tab inside its column (or the tab, outside columns), as "left-right in left-right".
OVERFLOW_JS = """() => {
  const panel = [...document.querySelectorAll('[role="tabpanel"]')].find(p => p.offsetParent);
  const out = [];
  for (const img of panel.querySelectorAll('[data-testid="stImage"] img')) {
    const r = img.getBoundingClientRect();
    const b = (img.closest('[data-testid="stColumn"]') || panel).getBoundingClientRect();
    if (r.right > b.right + 1 || r.left < b.left - 1)
      out.push(`${Math.round(r.left)}-${Math.round(r.right)} in ${Math.round(b.left)}-${Math.round(b.right)}`);
  }
  return [panel.querySelectorAll('[data-testid="stImage"] img').length, out];
}"""


def test_inside_what_excites_a_channel_fits_a_projector(server, page):
    """At 1024x768 the top patches, their projections and one unit's view stay inside their columns."""
    pg = page.context.browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        pg.goto(server + "/inside")
        _wait(pg)
        pg.get_by_role("tab", name="What excites a channel").click()
        _wait(pg)
        pg.get_by_role("button", name="Search 8 images").click()
        pg.wait_for_function("document.body.innerText.includes('strongest places in 8 images')", timeout=240_000)
        _wait(pg)
        shown, overflowing = pg.evaluate(OVERFLOW_JS)               # the 9 patches and their projections
        assert shown >= 2 and overflowing == [], overflowing
        pg.get_by_role("button", name="Project this channel's strongest unit").click()
        pg.wait_for_function("document.body.innerText.includes('activation')", timeout=240_000)
        _wait(pg)
        more, overflowing = pg.evaluate(OVERFLOW_JS)                # and one unit's view
        pg.get_by_text("its strongest unit, at").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "inside-what-excites-1024.png"))
        assert more >= shown + 4 and overflowing == [], overflowing
        assert pg.evaluate(CLIPPED_JS) == []
        assert not pg.query_selector_all('[data-testid="stException"]')
    finally:
        pg.close()


def test_inside_takes_a_studio_download_of_45_mb_through_the_server(server, page, tmp_path):
    """A fine-tuned ResNet-18 (model.safetensors, 44.8 MB) and its model.json, uploaded together through a
    real server (whose maxUploadSize caps every upload): the page rebuilds the run's model."""
    from tests.studio_downloads import studio_download

    studio_download(tmp_path, "finetune", "random")
    assert (tmp_path / "model.safetensors").stat().st_size > 40 * 2**20
    page.goto(server + "/inside")
    _wait(page)
    page.get_by_text(re.compile(r"^upload \(\.safetensors")).click()
    _wait(page)
    drop = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]')
    drop.set_input_files(str(tmp_path / "model.safetensors"))              # the weights alone first
    page.wait_for_function("document.body.innerText.includes('has a classifier for 3 classes') || "
                           "document.body.innerText.includes('must be')", timeout=180_000)
    _wait(page)
    body = page.inner_text("body")
    assert "must be" not in body, body[body.find("must be") - 80:body.find("must be") + 40]   # not refused for size
    assert "Upload its model.json together with it" in body    # taken, read, and what is missing is said
    drop.set_input_files(str(tmp_path / "model.json"))                     # then its card beside it
    page.wait_for_function("document.body.innerText.includes('the whole fine-tuned model, 3 classes')",
                           timeout=180_000)
    _wait(page)
    body = page.inner_text("body")
    assert "your weights (model.safetensors with model.json" in body and "Top-5 predictions (your run's classes)" in body
    assert "must be" not in body and not page.query_selector_all('[data-testid="stAlertContentError"]')
    assert not page.query_selector_all('[data-testid="stException"]')


def test_studio_downloads_read_whole_on_a_projector(server, page):
    """After a run at 1024x768 the download buttons show their whole labels (the files' names)."""
    pg = page.context.browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        pg.goto(server + "/transfer")
        _wait(pg)
        _tiny_shapes(pg)
        pg.get_by_role("button", name="Train").click()
        pg.wait_for_function("document.body.innerText.includes('Validation accuracy')", timeout=240_000)
        _wait(pg)
        buttons = pg.query_selector_all('[data-testid="stDownloadButton"]')
        buttons[-1].scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "transfer-downloads-1024.png"))
        cut = pg.evaluate("""() => [...document.querySelectorAll('[data-testid="stDownloadButton"]')]
            .filter(b => [b, ...b.querySelectorAll('*')].some(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1))
            .map(b => b.innerText)""")
        assert cut == []
        labels = [b.inner_text() for b in buttons]
        assert len(labels) == 3 and all(name in label for name, label in
                                        zip(("head.safetensors", "model.json", "metrics.csv"), labels)), labels
        assert not pg.query_selector_all('[data-testid="stException"]')
    finally:
        pg.close()


@pytest.mark.parametrize("arch,node_text,expect", [("googlenet", "step to inception4c", "inception4c.branch1.conv"),
                                                    ("resnet18", "step to layer3", "layer3.0.conv1")])
def test_explorer_diagram_click_a_node_to_step_there(server, page, arch, node_text, expect):
    """The diagram of a branching and a residual network: the current layer's box is marked, and a
    click on another box moves the step-through to that module's first layer."""
    page.goto(server + f"/explorer?arch={arch}&layer=0")
    _wait(page)
    chart = page.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=60_000)
    assert chart.query_selector_all('polygon[fill="#f5b7b1"]')                 # layer 0's box is marked
    depth = page.locator('[data-testid="stSlider"]').filter(has_text="Depth").get_by_role("slider")
    before = depth.get_attribute("aria-valuenow")
    page.locator(f'[data-testid="stGraphVizChart"] a[*|title="{node_text}"]').first.click()
    _wait(page)
    page.wait_for_function(f"document.body.innerText.includes('{expect}')", timeout=30_000)
    assert f"arch={arch}" in page.url and "layer=0" not in page.url and "sid=" in page.url
    assert not page.query_selector_all('[data-testid="stException"]')
    # the click keeps the diagram's depth, and the page opens on the step-through, not at the top
    after = page.locator('[data-testid="stSlider"]').filter(has_text="Depth").get_by_role("slider")
    assert after.get_attribute("aria-valuenow") == before
    time.sleep(0.5)
    top = page.evaluate("document.getElementById('step').getBoundingClientRect().top")
    assert 0 <= top < page.viewport_size["height"] / 2, top


# The smallest diagram text on a projector, in CSS pixels: every text element's font size times
# the SVG's scale on screen.
DIAGRAM_TEXT_JS = """() => { const out = [];
  for (const t of document.querySelectorAll('[data-testid="stGraphVizChart"] svg text')) {
    const m = t.getScreenCTM();
    out.push(parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b)); }
  return out.length ? Math.min(...out) : null; }"""


@pytest.mark.parametrize("arch", ["inception_module", "googlenet", "resnet50"])
def test_the_diagram_reads_on_a_projector(server, page, arch):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    pg = page.context.browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        pg.goto(server + f"/explorer?arch={arch}")
        _wait(pg)
        pg.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=60_000)
        try:      # the SVG is drawn, then laid out at its reading size: give the layout a moment under load
            pg.wait_for_function(f"({DIAGRAM_TEXT_JS})() >= 12", timeout=15_000)
        except PlaywrightTimeout:
            pass
        smallest = pg.evaluate(DIAGRAM_TEXT_JS)
        assert smallest is not None and smallest >= 12, smallest
    finally:
        pg.close()


def test_fresh_sessions_opened_at_once_all_show_the_default_learning_rate(server, page):
    """Under load, fresh sessions once showed the learning rate box at its minimum (1e-06) instead of
    3e-3. Six sessions open the Studio at the same moment; each must show 3.0e-3."""
    browser = page.context.browser
    tabs = []
    for _ in range(6):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = ctx.new_page()
        tab.goto(server + "/transfer", wait_until="commit")     # all six requests in flight together
        tabs.append((ctx, tab))
    try:
        shown = []
        for _, tab in tabs:
            _wait(tab)
            shown.append(float(tab.input_value('input[aria-label="Peak learning rate (one-cycle)"]')))
        assert shown == [3e-3] * 6
    finally:
        for ctx, _ in tabs:
            ctx.close()


def test_a_restarted_server_lists_the_old_run_with_its_results(page, tmp_path, monkeypatch):
    """A real server restart: a run made on one server process is found, with its results, through the
    same link on a new server process over the same results directory."""
    from bench.browser import streamlit_server

    monkeypatch.setenv("CONVNETLAB_RESULTS", str(tmp_path))          # both servers' results directory
    with open(ARTIFACTS / "streamlit-restart.log", "w") as log:
        with streamlit_server(log) as first:
            page.goto(first + "/transfer")
            _wait(page)
            _tiny_shapes(page)
            page.get_by_role("button", name="Train").click()
            page.wait_for_function("document.body.innerText.includes('Validation accuracy')", timeout=240_000)
            _wait(page)
            link = page.url.split("/transfer", 1)[1]
            accuracy = page.inner_text('[data-testid="stMetric"]:has-text("Validation accuracy")')
        with streamlit_server(log) as second:                         # a new process, a new port
            page.goto(second + "/transfer" + link)
            _wait(page)
            page.wait_for_function("document.body.innerText.includes('Validation accuracy')", timeout=60_000)
            assert page.inner_text('[data-testid="stMetric"]:has-text("Validation accuracy")') == accuracy
            assert "This session's runs" in page.inner_text("body")
            assert not page.query_selector_all('[data-testid="stException"]')


def test_a_guessed_session_id_in_another_browser_sees_nothing(server, page):
    """Another browser context that makes up a sid (or alters a real one by a character) gets a fresh
    session and a note; it sees none of the owner's runs."""
    from urllib.parse import parse_qs, urlparse

    page.goto(server + "/transfer")
    _wait(page)
    real = parse_qs(urlparse(page.url).query)["sid"][0]
    ctx = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = ctx.new_page()
        for guess in ("test", real[:-1] + ("0" if real[-1] != "0" else "1")):
            tab.goto(f"{server}/transfer?sid={guess}")
            _wait(tab)
            body = tab.inner_text("body")
            assert "not issued by this server" in body and "This session's runs" not in body
            given = parse_qs(urlparse(tab.url).query)["sid"][0]
            assert given not in (guess, real)
    finally:
        ctx.close()


def test_a_tab_closed_mid_run_leaves_a_quiet_server_log(server, page):
    """Closing a tab while its run trains: the run goes on and the server's log stays free of
    tracebacks (websocket errors) and of bare-mode page runs (a worker must not re-run a page script
    when it starts); this checks the whole log of this module's server."""
    ctx = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    tab = ctx.new_page()
    tab.goto(server + "/transfer")
    _wait(tab)
    tab.get_by_role("button", name="Train").click()
    tab.wait_for_function("document.body.innerText.includes('step') || document.body.innerText.includes('Queued')",
                          timeout=60_000)
    ctx.close()                                        # the tab goes away mid-run
    time.sleep(3)                                      # the run's fragment ticks on in the server for a moment
    log = (ARTIFACTS / "streamlit.log").read_text()
    for noise in ("Traceback", "WebSocketDisconnected", "missing ScriptRunContext", "No runtime found"):
        assert noise not in log, f"{noise!r} in test-artifacts/streamlit.log"
