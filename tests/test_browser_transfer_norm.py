"""The Training Lab's detection and captioning tasks in headless Chromium, through a real server
(tiny settings from the link): the live curves of both networks, then the results.

In CI (CI=true) a missing Chromium is a failure; elsewhere these tests skip with a message.
"""

from __future__ import annotations

import time

import pytest

from tests.browsers import ARTIFACTS, IDLE, chromium, module_server, require_chromium


require_chromium()


@pytest.fixture(scope="module")
def server():
    with module_server("streamlit-transfer-norm.log") as base:
        yield base


@pytest.fixture(scope="module")
def page(server):
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1400, "height": 2000})


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
