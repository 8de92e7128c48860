"""The Training Lab's detection and captioning tasks in headless Chromium, through a real server
(tiny settings from the link): the live curves of both networks, then the results.

In CI (CI=true) a missing Chromium is a failure; elsewhere these tests skip with a message.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
ARTIFACTS = ROOT / "test-artifacts"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI: scripts/setup.sh dev should have installed it", pytrace=False)
    pytest.skip(f"BROWSER TESTS SKIPPED: no Chromium at {CHROMIUM} (run scripts/test.sh as root to install it)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    from bench.browser import streamlit_server

    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "streamlit-transfer-norm.log", "w") as log:
        try:
            with streamlit_server(log) as base:
                yield base
        except RuntimeError:
            pytest.fail("the app did not start; see test-artifacts/streamlit-transfer-norm.log")


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 2000})
        yield pg
        browser.close()


def _wait(pg) -> None:
    """Until the page's script has finished (the first visit of a fresh server imports torch and draws
    the example scenes: give a shared, loaded machine time)."""
    pg.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=180_000)


SERIES_JS = """() => { const p = [...document.querySelectorAll('.js-plotly-plot')]
                  .find(el => el.layout && el.layout.annotations &&
                        el.layout.annotations.some(a => a.text === 'training loss per step'));
                return p ? p.data.map(d => d.name).join('|') : ''; }"""


@pytest.mark.parametrize("task,query,done,shown", [
    ("detect", "scenes=8&val_scenes=4&size=32&classes=2&max_objects=2&epochs=2", "Done: mAP@0.5",
     "Average precision per class"),
    ("caption", "scenes=16&val_scenes=4&size=32&hidden=32&epochs=2", "Done: BLEU-4", "Exact sentences")])
def test_the_task_trains_both_networks_in_a_browser(server, page, task, query, done, shown):
    page.goto(f"{server}/lab?task={task}&{query}")
    _wait(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.wait_for_function(f"({SERIES_JS})().includes('pretrained: train loss')", timeout=240_000)
    page.wait_for_function(f"document.body.innerText.includes('{done}')", timeout=300_000)
    _wait(page)
    assert "scratch: train loss" in page.evaluate(SERIES_JS)          # both networks drawn
    body = page.inner_text("body")
    assert shown in body and "claim" in body and f"task={task}" in page.url and "job=" in page.url
    page.screenshot(path=str(ARTIFACTS / f"lab-{task}.png"), full_page=True)
    assert not page.query_selector_all('[data-testid="stException"]')
