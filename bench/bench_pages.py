"""Re-render time of each page after one input changes, through Streamlit's AppTest (the script
run only; the browser's drawing is not included). Goal: well under 0.5 s on the 2-core CPU, about
1 s for feature maps of ResNet-50 (one forward pass).

    .venv/bin/python bench/bench_pages.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]

# page, setup steps (kind, key, value), widget kind, key, values to cycle through
CHANGES = [
    ("pages/explorer.py", [], "slider", "layer", [3, 4, 5, 6, 7]),
    ("pages/design.py", [], "number_input", "s_n", [2, 3, 4, 5, 6]),
    ("pages/design.py", [], "number_input", "st_h", [128, 160, 192, 224, 256]),
    ("pages/zoo.py", [], "toggle", "zoo_log", [False, True, False, True, False]),
    # the explorer's diagram: depth 2 and 3 are drawn once (the max), then cached (the median)
    ("pages/explorer.py", [("selectbox", "arch", "googlenet")], "slider", "diagram_googlenet", [2, 3, 2, 3, 2]),
    ("pages/explorer.py", [("selectbox", "arch", "resnet152")], "slider", "diagram_resnet152", [2, 3, 2, 3, 2]),
    # feature maps of ResNet-50 at 224 once the model is cached: a full forward pass per change
    ("pages/inside.py", [("selectbox", "in_arch", "resnet50")], "selectbox", "in_layer_resnet50",
     ["layer1", "layer2", "layer3", "layer4", "layer1.0"]),
]


def main() -> int:
    print(f"{'page':22} {'input':14} {'median (s)':>10} {'max (s)':>8}")
    for page, setup, kind, key, values in CHANGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page(page).run()  # first run: imports and caches, not measured
        for s_kind, s_key, s_value in setup:
            getattr(at, s_kind)(key=s_key).set_value(s_value).run()
        times = []
        for v in values:
            widget = getattr(at, kind)(key=key).set_value(v)
            t = time.perf_counter()
            widget.run()
            times.append(time.perf_counter() - t)
            assert not at.exception, at.exception
        print(f"{page:22} {key:14} {statistics.median(times):10.3f} {max(times):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
