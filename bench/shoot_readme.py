"""The README's and the guide's screenshots, retaken from a real server: a lecture stop, the handout
opened from a file, a class (the lecturer's screen with the answers coming in, a student's screen),
and each Training Lab task after its default run (the settings its page opens with).

    CONVNETLAB_RESULTS=DIR .venv/bin/python bench/shoot_readme.py [--only lecture,handout,class,lab]
        [--out assets/screenshots]

DIR should hold a prepared lecture (`python -m core lecture prepare`) so that the stops open at once.
The Lab's default runs take minutes on a CPU (bench/README.md lists them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, streamlit_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAB_TASKS = ("autoencoder", "unet", "siamese", "depth")


def _idle(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=300_000)


def _text(pg, text: str, timeout: float = 60_000) -> None:
    pg.wait_for_function("t => document.body.innerText.includes(t)", arg=text, timeout=timeout)


def lecture(b, base: str, out: Path) -> None:
    pg = b.new_page(viewport={"width": 1280, "height": 800})
    pg.goto(f"{base}/lecture?stop=inception-module")
    pg.wait_for_selector('[data-testid="stMain"] [data-testid="stHeading"] h2', timeout=120_000)
    _idle(pg)
    pg.wait_for_selector('[data-testid="stGraphVizChart"] svg, [data-testid="stPlotlyChart"] .main-svg',
                         timeout=120_000)
    time.sleep(1)
    pg.screenshot(path=str(out / "lecture-stop.png"))
    pg.close()


def handout(b, base: str, out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="convnetlab-handout-"))
    subprocess.run([sys.executable, "-m", "core", "lecture", "export", str(folder)], cwd=ROOT, check=True,
                   capture_output=True)
    pg = b.new_page(viewport={"width": 1280, "height": 800})
    pg.goto((folder / "index.html").as_uri() + "#inception-module")
    time.sleep(2)
    pg.screenshot(path=str(out / "handout.png"))
    pg.close()


def classroom(b, base: str, out: Path) -> None:
    lec_ctx = b.new_context(viewport={"width": 1280, "height": 800})
    lec = lec_ctx.new_page()
    lec.goto(f"{base}/lecture?stop=transfer-table")
    _idle(lec)
    lec.get_by_role("button", name="Start a class").click()
    _text(lec, "Join code:")
    _idle(lec)
    code = re.search(r"[?&]class=([A-Z0-9]{6})", lec.url).group(1)
    students = []
    for nick in ("Ada", "Bo", "Cy"):
        pg = b.new_context(viewport={"width": 1024, "height": 768}).new_page()
        pg.goto(f"{base}/lecture?class={code}")
        _idle(pg)
        pg.get_by_label("Nickname (optional, shown on the class board)").fill(nick)
        pg.get_by_role("button", name="Join the class").click()
        _text(pg, "following the lecturer")
        students.append(pg)
    lec.get_by_text("Ask the room a question").click()
    lec.get_by_text("Which transfer-learning scenario?").click()
    _idle(lec)
    lec.get_by_role("button", name="Ask the room").click()
    for i, pg in enumerate(students):
        _text(pg, "Question from the lecturer")
        _idle(pg)
        pg.locator('[data-testid="stMain"] [data-testid="stForm"] [role="radiogroup"] label').nth(i % 2).click()
        pg.get_by_role("button", name="Send").click()
        _text(pg, "Your answer is in")
    _text(lec, "Answers so far: 3")
    time.sleep(1)
    lec.locator('[data-testid="stPlotlyChart"]').last.scroll_into_view_if_needed()
    lec.screenshot(path=str(out / "class-lecturer.png"))
    students[0].locator('[data-testid="stForm"], [data-testid="stAlert"]').last.scroll_into_view_if_needed()
    students[0].screenshot(path=str(out / "class-student.png"))
    lec_ctx.close()


def lab(b, base: str, out: Path, task: str) -> None:
    pg = b.new_page(viewport={"width": 1280, "height": 800})
    pg.goto(f"{base}/lab?task={task}")
    _idle(pg)
    pg.get_by_role("button", name="Train", exact=True).click()
    _text(pg, "Done", 1_800_000)
    _idle(pg)
    time.sleep(2)
    done = pg.locator('[data-testid="stAlert"]').filter(has_text="Done").first
    done.scroll_into_view_if_needed()
    pg.screenshot(path=str(out / f"lab-{task}.png"))
    pg.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="lecture,handout,class,lab")
    ap.add_argument("--out", default=str(ROOT / "assets" / "screenshots"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    only = a.only.split(",")
    with streamlit_server() as base, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, shoot in (("lecture", lecture), ("handout", handout), ("class", classroom)):
            if name in only:
                shoot(b, base, out)
                print(f"{name}: done", flush=True)
        if "lab" in only:
            for task in LAB_TASKS:
                lab(b, base, out, task)
                print(f"lab {task}: done", flush=True)
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
