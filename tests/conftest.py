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
