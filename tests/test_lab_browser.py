"""The Training Lab in a real browser at a projector's size (1024x768, and 1280x720): every chart's text
at least 12 px and dark, nothing cut off its chart or its column, the task choice on one row, Train
on the first screen, the share link whole while a run trains, the newcomer's caption on one line.
This is the projector check of tests/test_browser.py for the Lab's charts (live and results) and the
ResNet paper's Table 2, which that test cannot reach without runs.

In CI (CI=true) a missing Chromium is a failure; elsewhere these tests skip with a message.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.browsers import ARTIFACTS, IDLE, chromium, clipped_js, module_server, require_chromium

STEP = r"/step \d+ of \d+/.test(document.body.innerText)"

require_chromium()

# The contrast (WCAG) of an element's text on the white page: its colour ("rgb(r, g, b)" or "rgba(...)"),
# times its own opacity (an SVG text's fill-opacity) and every enclosing element's (Streamlit greys a
# caption with opacity 0.6 on its container), blended with the white under it.
CONTRAST_JS = """
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const contrastOf = (el, colour, own) => {
    const m = (colour.match(/[\\d.]+/g) || [0, 0, 0]).map(Number);
    let a = (m.length > 3 ? m[3] : 1) * (isNaN(own) ? 1 : own);
    for (let e = el; e; e = e.parentElement) a *= parseFloat(getComputedStyle(e).opacity);
    const [r, g, b] = m.slice(0, 3).map(v => a * v + (1 - a) * 255);
    return 1.05 / (0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b) + 0.05); };
"""

# Every text of every visible chart: its size on screen (font size times the SVG's scale), its
# contrast on the white page (WCAG: 4.5 for text), whether it lies inside its chart, and whether two
# titles overlap. Hover labels and the mode bar are not text a projector shows.
CHART_TEXT_JS = """() => {
""" + CONTRAST_JS + """
  const out = [];
  let texts = 0;
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    if (!plot.offsetParent) continue;
    const box = plot.getBoundingClientRect();
    const titles = [];
    for (const t of plot.querySelectorAll('svg text')) {
      const s = (t.textContent || '').trim();
      if (!s || t.closest('.hoverlayer') || t.closest('.modebar')) continue;
      const r = t.getBoundingClientRect();
      if (!r.width) continue;
      texts++;
      const cs = getComputedStyle(t);
      const m = t.getScreenCTM();
      const px = parseFloat(cs.fontSize) * Math.hypot(m.a, m.b);
      const contrast = contrastOf(t, cs.fill, parseFloat(cs.fillOpacity));
      const name = JSON.stringify(s.slice(0, 50));
      if (px < 12) out.push(`${name}: ${px.toFixed(1)} px`);
      if (contrast < 4.5) out.push(`${name}: ${cs.fill}, contrast ${contrast.toFixed(1)}`);
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
        out.push(`${name}: outside its chart`);
      if (t.closest('.g-gtitle') || t.closest('.annotation')) titles.push([name, r]);
    }
    for (let i = 0; i < titles.length; i++) for (let j = i + 1; j < titles.length; j++) {
      const [a, p] = titles[i], [b, q] = titles[j];
      if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) out.push(`${a} overlaps ${b}`);
    }
  }
  return [texts, out];
}"""

# Metric values and labels, buttons, select values, widget labels wider than their box; tables wider
# than their column (a static table that scrolls, a data frame's grid with a horizontal scroll bar).
CLIPPED_JS = clipped_js(('[data-testid="stMetricValue"]', '[data-testid="stMetricLabel"]',
                         '[data-testid="stMetricDelta"]', 'button', '[data-testid="stSelectbox"] input',
                         '[data-testid="stWidgetLabel"] p', '[data-testid="stTable"]', '.dvn-scroller'))

# The intro under the title: its colour's contrast on white and its size.
INTRO_JS = """() => {
""" + CONTRAST_JS + """
  const p = [...document.querySelectorAll('[data-testid="stMain"] p')]
    .find(e => e.innerText.includes('Training runs in a separate process'));
  const cs = getComputedStyle(p);
  return [contrastOf(p, cs.color, 1), parseFloat(cs.fontSize)];
}"""

# The rows the task choice takes: the distinct tops of a button group's buttons, or one for a select box.
TASK_ROWS_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const group = main.querySelector('[data-testid="stButtonGroup"]');
  if (group) return new Set([...group.querySelectorAll('button')].map(b => Math.round(b.getBoundingClientRect().top))).size;
  return [...main.querySelectorAll('[data-testid="stSelectbox"]')].some(b => b.innerText.startsWith('Task')) ? 1 : 0;
}"""

# Lines each image caption takes (a word broken inside, "newco/mer", makes two).
CAPTION_LINES_JS = """(text) => [...document.querySelectorAll('[data-testid="stMain"] *')]
  .filter(e => e.children.length === 0 && e.offsetParent && e.textContent.trim() === text)
  .map(e => { const r = document.createRange(); r.selectNodeContents(e);
              return new Set([...r.getClientRects()].map(q => Math.round(q.top))).size; })"""


@pytest.fixture(scope="module")
def server():
    with module_server("streamlit-lab.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _wait(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=120_000)


def _tab(browser, width: int = 1024, height: int = 768):
    return browser.new_context(viewport={"width": width, "height": height}).new_page()


def _reads_whole(pg, where: str) -> int:
    """Asserts every chart's text and every box on the page read whole; returns the chart texts checked."""
    texts, problems = pg.evaluate(CHART_TEXT_JS)
    clipped = pg.evaluate(CLIPPED_JS)
    if problems or clipped:
        pg.screenshot(path=str(ARTIFACTS / f"lab-unreadable-{re.sub(r'[^a-z0-9]+', '-', where)}.png"))
    assert not problems, f"{where}: " + "; ".join(problems)
    assert not clipped, f"{where}: cut off: {clipped}"
    return texts


def _train(pg, done: str, timeout: float = 300) -> None:
    pg.get_by_role("button", name="Train").click()
    _shows(pg, done, timeout=timeout)
    _wait(pg)


def _shows(pg, *texts: str, timeout: float = 60) -> None:
    """Wait until the page shows every one of `texts` (a run's end reruns the whole page after its live
    view has said "Done", so the results come a moment later)."""
    pg.wait_for_function("texts => texts.every(t => document.body.innerText.includes(t))", arg=list(texts),
                         timeout=timeout * 1000)


@pytest.mark.parametrize("width,height", [(1024, 768), (1280, 720)])
def test_every_lab_task_reads_whole_before_a_run(server, browser, width, height):
    """Every task at a projector's size: the task choice on one row, the intro in the text's own
    colour, Train on the first screen, every chart (the ResNet paper's Table 2) and table whole."""
    pg = _tab(browser, width, height)
    try:
        for task in ("autoencoder", "unet", "siamese", "depth"):
            pg.goto(f"{server}/lab?task={task}")
            _wait(pg)
            pg.wait_for_function(f"({TASK_ROWS_JS})() > 0", timeout=30_000)
            assert pg.evaluate(TASK_ROWS_JS) == 1, task
            contrast, size = pg.evaluate(INTRO_JS)
            assert contrast >= 7 and size >= 16, (task, contrast, size)
            train = pg.get_by_role("button", name="Train").bounding_box()
            assert train["y"] + train["height"] <= height, (task, train)          # seen without scrolling
            if task == "depth":                   # the paper's Table 2 drawn (plotly draws after the script ends)
                pg.wait_for_function("document.querySelectorAll('.js-plotly-plot text.bartext').length >= 4",
                                     timeout=30_000)
            texts = _reads_whole(pg, f"{task} {width}")
            if task == "depth":
                assert texts >= 10                                                  # Table 2 was there to check
                labels = pg.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot text.bartext')]
                                        .map(t => t.textContent)""")
                assert sorted(labels) == ["25.03%", "27.88%", "27.94%", "28.54%"]
        assert not pg.query_selector_all('[data-testid="stException"]')
    finally:
        pg.context.close()


def test_a_unet_run_shares_while_it_trains_and_its_charts_read_whole(server, browser):
    pg = _tab(browser)
    try:
        # long enough to share while it trains: 120 steps a network, about 10 s on an idle 2-core machine
        # (3 epochs ended within a second once workers came forked with torch imported)
        pg.goto(f"{server}/lab?task=unet&images=100&size=16&epochs=24")
        _wait(pg)
        pg.get_by_role("button", name="Train").click()
        pg.wait_for_function(STEP, timeout=300_000)
        job = re.search(r"job=([0-9a-f]{12})", pg.url).group(1)
        pg.get_by_role("button", name="Share this run").click()
        link = pg.locator('[data-testid="stPopoverBody"] code, [data-testid="stPopover"] code').first
        link.wait_for(timeout=10_000)
        time.sleep(2.5)                                        # the live view ticks twice meanwhile
        text = link.inner_text().strip()
        assert re.fullmatch(rf"{re.escape(server)}/lab\?task=unet&job={job}&view=[0-9a-f]{{32}}", text), text
        box, pop = link.bounding_box(), pg.locator('[data-testid="stPopoverBody"]').bounding_box()
        assert box["x"] + box["width"] <= pop["x"] + pop["width"] + 1             # the whole link in its box
        pg.screenshot(path=str(ARTIFACTS / "lab-share-running-1024.png"))
        pg.keyboard.press("Escape")
        viewer = _tab(browser)
        try:                                                   # the link, opened while the run trains
            viewer.goto(text)
            _wait(viewer)
            assert "read-only" in viewer.inner_text("body")
            viewer.wait_for_function("document.body.innerText.includes('Done: IoU')", timeout=300_000)
        finally:
            viewer.context.close()
        pg.wait_for_function("document.body.innerText.includes('U-Net IoU, thin curves')", timeout=300_000)
        _wait(pg)
        iou_axis = pg.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .find(el => el.layout.annotations && el.layout.annotations.some(a => a.text === 'training loss per step'))
            .layout.yaxis2.range""")
        assert iou_axis == [0, 1]
        assert _reads_whole(pg, "unet results") >= 40
        pg.get_by_text("U-Net IoU, whole mask").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "lab-unet-results-1024.png"))
        assert not pg.query_selector_all('[data-testid="stException"]')
    finally:
        pg.context.close()


def test_siamese_and_depth_runs_read_whole(server, browser):
    pg = _tab(browser)
    try:
        pg.goto(f"{server}/lab?task=siamese&epochs=2&characters=60&unseen=20&drawers=4&trials=100")
        _wait(pg)
        _train(pg, "Done: one-shot on 20 unseen classes")
        _shows(pg, "A match needs a similarity", "Strangers turned away")
        _wait(pg)
        lines = pg.evaluate(CAPTION_LINES_JS, "newcomer")
        assert lines and all(n == 1 for n in lines), lines                     # not "newco" / "mer"
        _reads_whole(pg, "siamese results")
        pg.get_by_text("Strangers turned away").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "lab-siamese-newcomer-1024.png"))
        pg.goto(f"{server}/lab?task=depth&depths=8,14&width=4&data=shapes&per_class=20&size=8&epochs=2")
        _wait(pg)
        _train(pg, "Done: plain8")
        body = pg.inner_text("body")
        assert re.search(r"Trainable parameters per network: plain8 [\d,]+, resnet8 [\d,]+, plain14 [\d,]+, "
                         r"resnet14 [\d,]+", body)
        _reads_whole(pg, "depth results")
        pg.get_by_text("Final errors").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "lab-depth-results-1024.png"))
        assert not pg.query_selector_all('[data-testid="stException"]')
    finally:
        pg.context.close()


def test_two_autoencoder_runs_side_by_side_read_whole(server, browser):
    pg = _tab(browser)
    try:
        pg.goto(f"{server}/lab?task=autoencoder&bottleneck=2&epochs=1")
        _wait(pg)
        _train(pg, "Done: bottleneck 2")
        pg.goto(pg.url.replace("bottleneck=2", "bottleneck=32"))
        _wait(pg)
        _train(pg, "Done: bottleneck 32")
        pg.wait_for_function("document.body.innerText.includes('Your runs side by side')", timeout=60_000)
        _wait(pg)
        _reads_whole(pg, "autoencoder compared")
        pg.get_by_text("Your runs side by side").scroll_into_view_if_needed()
        pg.screenshot(path=str(ARTIFACTS / "lab-autoencoder-compared-1024.png"))
        assert not pg.query_selector_all('[data-testid="stException"]')
    finally:
        pg.context.close()
