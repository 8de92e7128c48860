"""Where the dashboard keeps what must outlive one server process.

`results_dir()` is $CONVNETLAB_RESULTS, else `convnetlab` under the user's cache directory
($XDG_CACHE_HOME, default ~/.cache). It holds the server secret that signs session ids
(`core.links`).
"""

from __future__ import annotations

import os
from pathlib import Path


def results_dir() -> Path:
    """The configured results directory (created on first use)."""
    env = os.environ.get("CONVNETLAB_RESULTS")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convnetlab"
    base.mkdir(parents=True, exist_ok=True)
    return base
