"""A class following its lecturer, measured: scripts/serve-class.sh (two replicas behind HAProxy, a
local Ray head) on loopback; one lecturer and N students, each a real Chromium page (one browser,
one context each, alternately pinned to each replica). The lecturer moves through STOPS stops with
the Next button and asks QUESTIONS questions (the scenario question), every student answers on
their page. Measured: for every move, the time from the lecturer's click to each student's page
showing the new stop (p50, p95, max), answers lost (asked x students minus answers stored), page
errors, and each replica's memory at the end. Bounded: N students, STOPS moves, QUESTIONS questions.

    .venv/bin/python bench/bench_class_follow.py [--students 10,25,50] [--stops 10] [--questions 3]
        [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_class import free_port, run_folder, start_class, stop_class  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TITLE_JS = "() => document.querySelector('[data-testid=\"stMainBlockContainer\"] h2')?.innerText.trim()"
COOKIE = "CONVNETLAB_REPLICA"


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the replica's Streamlit and its workers)."""
    total = 0
    pids = [pid]
    try:
        for line in os.popen(f"ps -o pid= --ppid {pid}").read().split():
            pids.append(int(line))
    except ValueError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def _idle(pg) -> None:
    await pg.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    await asyncio.sleep(0.2)
    await pg.wait_for_selector(IDLE, timeout=180_000)


async def _class(port: int, n: int, stops: int, questions: int, results: Path) -> dict:
    from playwright.async_api import async_playwright

    from core.classroom import ClassStore

    base = f"http://127.0.0.1:{port}"
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)

        async def page_on(replica: str, url: str):
            ctx = await browser.new_context(viewport={"width": 1024, "height": 768})
            await ctx.add_cookies([{"name": COOKIE, "value": replica, "url": base}])
            pg = await ctx.new_page()
            pg.on("pageerror", lambda e: errors.append(str(e)[:200]))
            await pg.goto(url, timeout=180_000)
            await _idle(pg)
            return pg

        lec = await page_on("r1", base + "/lecture?stop=transfer-scenario-1")
        await lec.get_by_role("button", name="Start a class").click()
        await lec.wait_for_function("() => document.body.innerText.includes('Join code:')", timeout=60_000)
        await _idle(lec)
        code = re.search(r"[?&]class=([A-Z0-9]{6})", lec.url).group(1)

        async def join(i: int):
            pg = await page_on("r1" if i % 2 else "r2", f"{base}/lecture?class={code}")
            await pg.get_by_role("button", name="Join the class").click()
            await pg.wait_for_function("() => document.body.innerText.includes('following the lecturer')",
                                       timeout=120_000)
            return pg

        t_join = time.perf_counter()
        students = []
        for start in range(0, n, 5):                 # five at a time: a class arrives over a minute or two
            students += await asyncio.gather(*(join(i) for i in range(start, min(n, start + 5))))
        join_s = time.perf_counter() - t_join

        delays: list[float] = []
        missed = 0
        per_move: list[int] = []                   # students who arrived, move by move
        missed_by: list[int] = [0] * n             # moves each student missed
        asked = 0
        store = ClassStore(results / "classes.sqlite")
        for move in range(stops):
            await _idle(lec)
            t0 = time.perf_counter()
            await lec.get_by_role("button", name="Next ▶").click()
            await lec.wait_for_function(f"() => ({TITLE_JS})() !== undefined", timeout=60_000)
            await _idle(lec)
            title = await lec.evaluate(TITLE_JS)

            async def arrives(pg):
                try:
                    await pg.wait_for_function(f"t => ({TITLE_JS})() === t", arg=title, timeout=30_000, polling=50)
                    return time.perf_counter() - t0
                except Exception:  # noqa: BLE001 - a student who never arrived is counted, not fatal
                    return None

            got = await asyncio.gather(*(arrives(pg) for pg in students))
            delays += [d for d in got if d is not None]
            missed += sum(d is None for d in got)
            per_move.append(sum(d is not None for d in got))
            for i, d in enumerate(got):
                missed_by[i] += d is None
            if asked < questions and move % max(1, stops // questions) == 0:
                try:
                    await lec.get_by_text("Ask the room a question").click(timeout=90_000)
                except Exception:
                    await lec.screenshot(path=str(results / "lecturer-at-failure.png"))
                    print(f"screenshot: {results / 'lecturer-at-failure.png'}", flush=True)
                    raise
                await lec.get_by_text("Which transfer-learning scenario?").click()
                await _idle(lec)
                await lec.get_by_role("button", name="Ask the room").click()
                asked += 1

                async def answer(pg):
                    try:
                        await pg.wait_for_function("() => document.body.innerText.includes('Question from the "
                                                   "lecturer')", timeout=60_000)
                        await _idle(pg)
                        await pg.locator('[data-testid="stMain"] [data-testid="stForm"] [role="radiogroup"] label') \
                            .first.click()
                        await pg.get_by_role("button", name="Send").click()
                        await pg.wait_for_function("() => document.body.innerText.includes('Your answer is in')",
                                                   timeout=60_000)
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"answer: {str(e)[:120]}")

                await asyncio.gather(*(answer(pg) for pg in students))
                await lec.get_by_role("button", name="Reveal the answer").click()
        stt = store.state(code)
        answers = sum(store.tally(code, q).total for q in range(1, asked + 1))
        exceptions = 0
        for pg in [lec, *students]:
            exceptions += await pg.locator('[data-testid="stException"]').count()
        # what a student who missed moves sees at the end: still following, or detached
        still_following = 0
        for pg in students:
            still_following += "following the lecturer" in await pg.inner_text("body")
        await browser.close()
        store.close()
    delays.sort()
    return {"students": n, "moves": stops, "join_s": round(join_s, 1),
            "p50_s": round(statistics.median(delays), 2) if delays else None,
            "p95_s": round(delays[min(len(delays) - 1, int(0.95 * len(delays)))], 2) if delays else None,
            "max_s": round(delays[-1], 2) if delays else None, "arrivals": len(delays), "never_arrived": missed,
            "questions": asked, "answers_lost": asked * n - answers, "joined": stt.joined,
            "page_errors": len(errors), "exceptions_on_pages": exceptions, "error_samples": errors[:3],
            "arrived_per_move": per_move, "students_missing_every_move": sum(m == stops for m in missed_by),
            "students_missing_some_moves": sum(0 < m < stops for m in missed_by),
            "still_following_at_end": still_following}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", default="10,25,50")
    ap.add_argument("--stops", type=int, default=10)
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    rows = []
    for n in [int(x) for x in a.students.split(",")]:
        port = free_port(2)
        results = Path(tempfile.mkdtemp(prefix="convnetlab-bench-class-"))
        env = {**os.environ, "CONVNETLAB_RESULTS": str(results)}
        env.pop("RAY_ADDRESS", None)
        log = results / "serve-class.log"
        proc = start_class(port, 2, env, log)
        try:
            row = asyncio.run(_class(port, n, a.stops, a.questions, results))
            state = json.loads((run_folder(port) / "state.json").read_text())
            row["replica_mb"] = [round(_rss_mb(pid)) for name, pid in sorted(state["children"].items())
                                 if name.startswith("replica")]
        finally:
            stop_class(proc)
        row["load_avg_1m"] = round(os.getloadavg()[0], 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"machine": os.uname().nodename, "cores": os.cpu_count(),
                                                "when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
