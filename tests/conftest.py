"""Shared test setup: the project root on sys.path, and helpers to build real models."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The results directory (the server secret lives there) is a fresh temporary folder per test run,
# never the user's cache.
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("CONVNETLAB_RESULTS", tempfile.mkdtemp(prefix="convnetlab-test-results-"))


# --- markers: the quick loop (`bash scripts/test.sh --quick`) leaves out browsers, Ray and long training ---
import pytest  # noqa: E402

BROWSER_MODULES = {"test_browser", "test_browser_own_model", "test_browser_transfer_norm", "test_lab_browser",
                   "test_lecture_browser", "test_class"}
RAY_MODULES = {"test_runners", "test_class"}
SLOW_SECONDS = 3.0          # a test that took longer in the recorded run counts as slow
SLOW_FILE = Path(__file__).with_name("slow_tests.txt")


def _slow_ids() -> set[str]:
    """Tests recorded as slow (tests/slow_tests.txt, rewritten by `scripts/test.sh --record-slow`)."""
    try:
        return {line.split()[0] for line in SLOW_FILE.read_text().splitlines() if line.strip() and line[0] != "#"}
    except OSError:
        return set()


def pytest_collection_modifyitems(config, items):
    slow = _slow_ids()
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        if module in RAY_MODULES:
            item.add_marker(pytest.mark.ray)
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
