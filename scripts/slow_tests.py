"""Writes tests/slow_tests.txt from a pytest JUnit XML file: every test that took over SLOW_SECONDS
(setup and call), slowest first, with its time, then each module's other tests' seconds together. The
quick loop (`scripts/test.sh --quick`) leaves the slow ones out; the full command runs them all. The
seconds set the order the two workers take the modules in (tests/conftest.py), longest first."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import SLOW_FILE, SLOW_SECONDS  # noqa: E402


def node_id(case: ET.Element) -> str:
    """pytest's node id from a JUnit test case (classname tests.test_x, name test_y[param])."""
    module = case.get("classname", "").replace(".", "/") + ".py"
    return f"{module}::{case.get('name')}"


def main(xml: str) -> int:
    cases = [(float(c.get("time", 0)), node_id(c)) for c in ET.parse(xml).getroot().iter("testcase")]
    slow = sorted((c for c in cases if c[0] > SLOW_SECONDS), reverse=True)
    rest: dict[str, float] = {}
    for t, nid in cases:
        if t <= SLOW_SECONDS:
            module = nid.partition("::")[0]
            rest[module] = rest.get(module, 0.0) + t
    SLOW_FILE.write_text(
        "# tests over %.0f s in the recorded run (scripts/test.sh --record-slow): id, seconds\n" % SLOW_SECONDS
        + "".join(f"{nid} {t:.1f}\n" for t, nid in slow)
        + "# each module's other tests, their seconds together (the order the workers take the modules in)\n"
        + "".join(f"{m} {t:.1f}\n" for m, t in sorted(rest.items(), key=lambda kv: -kv[1])))
    print(f"{len(slow)} of {len(cases)} tests over {SLOW_SECONDS:.0f} s -> {SLOW_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
