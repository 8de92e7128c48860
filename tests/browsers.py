"""What the browser test modules share: Debian's Chromium and its flags, the folder their screenshots
and server logs go to, a dashboard server for a module, a headless Chromium, and the script that
finds text cut off on a projector."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from bench.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, ServerDidNotStart, streamlit_server  # noqa: F401
from tests.conftest import ROOT

# The benchmarks' flags, and nothing that would reach out of the machine during a test.
ARGS = [*CHROMIUM_ARGS, "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"

# What a projector must show whole: metric values and labels, button labels, select values, tabs,
# toggle and widget labels.
WIDGET_TEXT = ('[data-testid="stMetricValue"]', '[data-testid="stMetricLabel"]', 'button',
               '[data-testid="stSelectbox"] input', '[data-testid="stMultiSelect"] [data-baseweb="tag"] span',
               '[role="tab"] p', '[data-testid="stCheckbox"] p', '[data-testid="stWidgetLabel"] p')


def clipped_js(selectors: tuple[str, ...] = WIDGET_TEXT) -> str:
    """A script for `page.evaluate`: the text of every visible element matching `selectors` that is
    cut off (it, or an element inside it, narrower than its content), once each."""
    return """() => {
  const sel = %s;
  const cut = (e) => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1;
  const out = [];
  for (const s of sel) for (const el of document.querySelectorAll(s)) {
    if (!el.offsetParent) continue;                         // hidden (another tab, a closed expander)
    if (cut(el) || [...el.querySelectorAll('*')].some(cut))
      out.push((el.innerText || el.value || el.getAttribute('title') || '').trim().slice(0, 60));
  }
  return [...new Set(out)];
}""" % json.dumps(list(selectors))


CLIPPED_JS = clipped_js()


def require_chromium() -> None:
    """Called by a browser module as it is imported: without Chromium its tests skip with a message,
    and in CI (CI=true) fail, since scripts/setup.sh dev installs it there."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: scripts/setup.sh dev should have installed it", pytrace=False)
        pytest.skip(f"BROWSER TESTS SKIPPED: no Chromium at {CHROMIUM} (run scripts/test.sh as root to install it)",
                    allow_module_level=True)


@contextlib.contextmanager
def module_server(log_name: str) -> Iterator[str]:
    """A dashboard server (its base URL), its output in test-artifacts/`log_name`. One that never
    starts fails the test that asked for it; one that does not stop fails with its stacks
    (bench/browser.py)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / log_name, "w") as log:
        try:
            with streamlit_server(log) as base:
                yield base
        except ServerDidNotStart:
            pytest.fail(f"the app did not start; see test-artifacts/{log_name}")


@contextlib.contextmanager
def chromium() -> Iterator:
    """Headless Chromium (playwright's Browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
