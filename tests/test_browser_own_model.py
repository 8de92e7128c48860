"""Your own model in a real browser (one server for the module): a Studio run on your own zip opens in
Inside the network on its classes and images with the what-changed chart; timm's Inception v4 steps
through in the explorer.

In CI (CI=true) a missing Chromium is a failure; elsewhere these tests skip with a message.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from tests.browsers import ARTIFACTS, IDLE, chromium, module_server, require_chromium


require_chromium()


@pytest.fixture(scope="module")
def server():
    with module_server("streamlit-own-model.log") as base:
        yield base


@pytest.fixture(scope="module")
def page(server):
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1400, "height": 2000})


def _wait(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=120_000)


def _zip(folder: Path) -> Path:
    """Two classes of your own: 8 pictures each, 48 px."""
    import io

    from PIL import Image

    from core.images import pattern

    path = folder / "mine.zip"
    with zipfile.ZipFile(path, "w") as z:
        for cls, pat in (("cat", "blob"), ("dog", "checkerboard")):
            for i in range(8):
                buf = io.BytesIO()
                Image.fromarray(pattern(pat, 48 + 2 * i)).save(buf, format="PNG")
                z.writestr(f"{cls}/{i}.png", buf.getvalue())
    return path


def test_a_studio_run_on_your_zip_opens_inside_the_network_with_what_changed(server, page, tmp_path):
    page.goto(server + "/transfer")
    _wait(page)
    page.get_by_text("my images (zip of class folders)").click()
    _wait(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(_zip(tmp_path)))
    page.wait_for_function("document.body.innerText.includes('16 images, 2 classes')", timeout=60_000)
    _wait(page)
    page.get_by_text("random (from scratch)").click()
    _wait(page)
    page.get_by_text("fine-tune (discriminative LRs)").click()
    _wait(page)
    page.get_by_role("button", name="Train").click()
    page.wait_for_function("document.body.innerText.includes('Validation accuracy')", timeout=300_000)
    _wait(page)
    page.get_by_role("link", name="Look inside this model").click()
    page.wait_for_function("document.body.innerText.includes('Your Studio run')", timeout=120_000)
    _wait(page)
    body = page.inner_text("body")
    assert "/inside" in page.url and "job=" in page.url
    assert "2 classes: cat, dog" in body and "Top-5 predictions (your run's classes)" in body
    assert "validation image" in body and "true class:" in body                      # its own validation images
    page.get_by_role("tab", name="What fine-tuning changed").click()
    page.get_by_role("button", name="Measure what fine-tuning changed").click()
    chart = """() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el.layout && el.layout.title &&
                 String(el.layout.title.text).includes('What training changed') && el.data.length === 2
                 && el.data[0].x.length === 7)"""
    page.wait_for_function(chart, timeout=300_000)                                 # 7 stages, bars and CKA line
    _wait(page)
    body = page.inner_text("body")
    assert "first-layer filters at the start" in body and "The new head (fc) started from random values" in body
    page.screenshot(path=str(ARTIFACTS / "inside-what-changed.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')


def test_timms_inception_v4_steps_through_in_the_explorer(server, page):
    page.goto(server + "/explorer?arch=timm:inception_v4&layer=0")
    page.wait_for_function("document.body.innerText.includes('42,679,816')", timeout=180_000)
    _wait(page)
    page.get_by_role("button", name="Next").click()
    page.wait_for_function("location.href.includes('layer=1')", timeout=60_000)
    _wait(page)
    body = page.inner_text("body")
    assert "inception_v4 (timm)" in body and "Layer 1 (of 0 to" in body
    page.screenshot(path=str(ARTIFACTS / "explorer-timm-inception-v4.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')
