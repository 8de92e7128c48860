"""The lecture path in Chromium: every stop stepped through by keyboard on a projector's screen,
and the handout opened from a file, with no server and no network.

One real server for the module, over a results folder prepared with tiny runs (every stop without
a run, and two training stops), as a lecturer's machine is after `python -m core lecture prepare`.
"""

from __future__ import annotations

import time

import pytest

from tests.browsers import ARTIFACTS, CLIPPED_JS, IDLE, chromium, module_server, require_chromium

require_chromium()

PREPARED_RUNS = ("transfer-scenario-3", "degradation")     # the cheapest runs with a loop and without


@pytest.fixture(scope="module")
def server():
    from core.lecture.prepare import prepare
    from core.lecture.stops import STOPS
    from tests.lecturefakes import InlineRunner

    prepare(InlineRunner(), "tiny", only=tuple(s.slug for s in STOPS if not s.training or s.slug in PREPARED_RUNS))
    with module_server("streamlit-lecture.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _wait(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    time.sleep(0.2)
    pg.wait_for_selector(IDLE, timeout=90_000)


def _on(pg, slug: str) -> None:
    """Waits until the page shows `slug`'s stop: its address, its header, the keys listening, the
    script done (under load a page renders piece by piece; a key pressed before it listens is lost)."""
    from core.lecture.stops import get

    pg.wait_for_function("""([slug, title]) => {
        const h = document.querySelector('[data-testid="stMain"] [data-testid="stHeading"] h2');
        return new URLSearchParams(location.search).get('stop') === slug && h && h.innerText === title
               && window.__lectureKeys === true
               && !!document.querySelector('.st-key-lecture_next[data-stale="false"] button'); }""",
                         arg=[slug, get(slug).title], timeout=90_000)
    _wait(pg)


def test_the_keyboard_steps_through_every_stop_at_1024x768(server, browser):
    """ArrowRight and PageDown (a clicker) step forward through all stops, PageUp and ArrowLeft back:
    every stop opens without an exception and nothing on it is cut off at a projector's 1024x768."""
    from core.lecture.stops import STOPS

    pg = browser.new_page(viewport={"width": 1024, "height": 768})
    problems = {}
    try:
        pg.goto(server + f"/lecture?stop={STOPS[0].slug}")
        _on(pg, STOPS[0].slug)
        for k, stop in enumerate(STOPS):
            pg.wait_for_function(f"document.body.innerText.includes('stop {k + 1} of {len(STOPS)}')", timeout=60_000)
            header = pg.inner_text('[data-testid="stMain"] [data-testid="stHeading"] h2')
            found = pg.evaluate(CLIPPED_JS)
            errors = pg.query_selector_all('[data-testid="stException"]')
            if header != stop.title or found or errors:
                problems[stop.slug] = (header, found, len(errors))
                pg.screenshot(path=str(ARTIFACTS / f"lecture-{stop.slug}.png"))
            if k + 1 < len(STOPS):
                pg.keyboard.press("ArrowRight" if k % 2 == 0 else "PageDown")
                _on(pg, STOPS[k + 1].slug)
        pg.keyboard.press("ArrowRight")                        # the last stop: nowhere further to go
        time.sleep(1.5)
        _on(pg, STOPS[-1].slug)
        pg.keyboard.press("PageUp")
        _on(pg, STOPS[-2].slug)
        pg.keyboard.press("ArrowLeft")
        _on(pg, STOPS[-3].slug)
    finally:
        pg.close()
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())


def test_a_typed_arrow_stays_in_its_field_and_larger_type_reads_whole_at_1280x720(server, browser):
    """An arrow key typed into a text field moves the cursor, not the lecture; with larger type at
    1280x720 a stop with metrics and one with a table still read whole."""
    pg = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        pg.goto(server + "/lecture?stop=alexnet-parameters&big=1")
        _on(pg, "alexnet-parameters")
        field = pg.get_by_label("Dashboard address in the handout's links")
        field.click()
        pg.keyboard.press("ArrowRight")
        time.sleep(1)
        assert "stop=alexnet-parameters" in pg.url
        for slug in ("alexnet-parameters", "degradation", "unet-concatenation"):
            pg.goto(server + f"/lecture?stop={slug}&big=1")
            _on(pg, slug)
            assert not pg.evaluate(CLIPPED_JS), slug
            assert not pg.query_selector_all('[data-testid="stException"]'), slug
        assert "big=1" in pg.url
    finally:
        pg.close()


def test_the_handout_opens_from_a_file_with_every_chart_drawn(server, browser, tmp_path):
    """Exported from the prepared state, opened from file:// in Chromium: every stop's charts drawn
    by the plotly.js written beside it, no script error and no request beyond the folder."""
    from core.lecture.handout import export
    from core.lecture.stops import STOPS

    index = export(tmp_path / "handout", server)
    pg = browser.new_page(viewport={"width": 1024, "height": 768})
    errors, outside = [], []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith("file://") else None)
    try:
        pg.goto(index.as_uri())
        pg.wait_for_function("typeof Plotly !== 'undefined'", timeout=30_000)
        charts = pg.evaluate("document.querySelectorAll('div[id^=\"chart-\"]').length")
        pg.wait_for_function(f"document.querySelectorAll('div[id^=\"chart-\"].js-plotly-plot .main-svg').length "
                             f">= {charts}", timeout=60_000)
        assert charts >= 10
        assert pg.evaluate("document.querySelectorAll('section').length") == len(STOPS)
        broken = pg.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
        assert broken == 0
        pg.goto(index.as_uri() + "#inception-module")
        pg.screenshot(path=str(ARTIFACTS / "handout-inception.png"))
    finally:
        pg.close()
    assert not errors and not outside, (errors, outside)
