"""A class following its lecturer, measured: scripts/serve-class.sh (two replicas behind HAProxy, a
local Ray head) on loopback, the visited stops prepared first as a lecturer does before class
(`python -m core lecture prepare --runs tiny --only ...`); one lecturer and N students, alternately
pinned to each replica. BROWSERS of the students are Chromium pages (one context each); the others,
and by default the lecturer, speak Streamlit's own websocket protocol (bench/st_protocol.py: what
the frontend sends and receives, without laying out or painting the page), because Chromium pages
on these 2 cores measure the benchmark's own rendering, while in a class every student's browser
runs on their own device (`--lecturer browser` puts the lecturer in Chromium). Once everyone has
joined, the run waits until the replicas are quiet (the joins' page loads over, as before a lecture
starts); then the lecturer moves through STOPS stops with the Next button and asks QUESTIONS
questions (the scenario question), which every student answers. `--push on,off` measures the
server's push to followers (pages/class_push.py) and the page's own one-second poll alone, one
after the other in one sitting.

Measured, for every move: the time from the lecturer's click to each student's screen showing the
new stop's header, the students watched from the click on: in Chromium, the header in the page;
over the protocol, the header received (each kind apart and together: p50, p95, max, and each
move's p95); for protocol students also the end of the run that drew the whole stop. Also: answers
lost (asked x students minus answers stored), page errors, the replicas' CPU seconds while the
lecturer moves, and each replica's memory at the end. Bounded: N students, STOPS moves, QUESTIONS
questions.

    .venv/bin/python bench/bench_class_follow.py [--students 10,25,50] [--browsers 3] [--stops 10]
        [--questions 3] [--unprepared] [--lecturer protocol|browser] [--push on|off|on,off] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_class import free_port, run_folder, start_class, stop_class  # noqa: E402
from bench.browser import CHROMIUM, IDLE  # noqa: E402
from bench.browser import CHROMIUM_ARGS as ARGS  # noqa: E402
from bench.st_protocol import ProtocolSession  # noqa: E402
from core.lecture.stops import STOPS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TITLE_JS = "() => document.querySelector('[data-testid=\"stMainBlockContainer\"] h2')?.innerText.trim()"
COOKIE = "CONVNETLAB_REPLICA"


def _tree(pid: int) -> list[int]:
    """A process and its children (the replica's Streamlit and its workers)."""
    try:
        return [pid, *(int(x) for x in os.popen(f"ps -o pid= --ppid {pid}").read().split())]
    except ValueError:
        return [pid]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children."""
    total = 0
    for p in _tree(pid):
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


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _replicas(port: int) -> list[int]:
    state = json.loads((run_folder(port) / "state.json").read_text())
    return [pid for name, pid in sorted(state["children"].items()) if name.startswith("replica")]


async def _until(done, timeout: float) -> bool:
    end = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > end:
            return False
        await asyncio.sleep(0.1)
    return True


async def _settled(port: int, quiet: float = 0.25, window: float = 2.0, limit: float = 90.0) -> float:
    """Waits until the replicas use less than `quiet` of a core over `window` seconds (the joins' page
    loads and the browsers' first renders are over, as before a lecture starts), at most `limit`
    seconds; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        c0 = sum(_cpu_s(pid) for pid in _replicas(port))
        await asyncio.sleep(window)
        if sum(_cpu_s(pid) for pid in _replicas(port)) - c0 < quiet * window:
            break
    return time.perf_counter() - t0


def _pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else None


class BrowserStudent:
    """A student in a real Chromium page: arrival is the new stop's header painted on the page."""

    def __init__(self, page):
        self.pg = page

    async def arrives(self, title: str, t0: float) -> float | None:
        try:
            await self.pg.wait_for_function(f"t => ({TITLE_JS})() === t", arg=title, timeout=30_000, polling=50)
            return time.perf_counter() - t0
        except Exception:  # noqa: BLE001 - a student who never arrived is counted, not fatal
            return None

    async def answer(self) -> None:
        pg = self.pg
        # the new question's answer box (an old question's box stays up, revealed, without one)
        await pg.wait_for_selector('[data-testid="stMain"] [data-testid="stForm"] [role="radiogroup"]', timeout=60_000)
        await _idle(pg)
        await pg.locator('[data-testid="stMain"] [data-testid="stForm"] [role="radiogroup"] label').first.click()
        await pg.get_by_role("button", name="Send").click()
        await pg.wait_for_function("() => document.body.innerText.includes('Your answer is in')", timeout=60_000)

    async def following(self) -> bool:
        return "following the lecturer" in await self.pg.inner_text("body")

    def why(self, t0: float) -> str:
        return "(Chromium)"

    async def exceptions(self) -> int:
        return await self.pg.locator('[data-testid="stException"]').count()


class ProtocolStudent:
    """A student over Streamlit's protocol (bench/st_protocol.py): arrival is the end of the full
    run that drew the new stop, every element of it delivered to the student's connection."""

    def __init__(self, session: ProtocolSession):
        self.s = session
        self.repeated = 0                            # answers sent a second time
        self.finished: list[float] = []              # per move: click to the end of the run that drew it

    async def arrives(self, title: str, t0: float) -> float | None:
        """The new stop's header received (what a browser shows as it arrives, the same moment the
        Chromium students are timed at); `finished` keeps when the whole run that drew it ended."""
        def at(events: list[tuple[float, str]]) -> float | None:
            return next((t - t0 for t, h in events if t >= t0 and h == title), None)

        await self.s.wait_until(lambda: at(self.s.headings) is not None, max(0.0, t0 + 30 - time.perf_counter()))
        await self.s.wait_until(lambda: at(self.s.shown) is not None, max(0.0, t0 + 30 - time.perf_counter()))
        if at(self.s.shown) is not None:
            self.finished.append(at(self.s.shown))
        return at(self.s.headings)

    async def answer(self) -> None:
        s = self.s
        def box() -> bool:                           # the new question's answer box (an old one stays up, revealed)
            return s.run_done.is_set() and any(e.kind == "radio" and e.proto.label == "Your answer"
                                               for e in s.elements.values())

        t_wait = time.perf_counter()
        if not await s.wait_until(box, 60):
            raise TimeoutError(f"no answer box within 60 s: {self.why(t_wait)}; "
                               f"run done {s.run_done.is_set()}, radios {[e.proto.label for e in s.elements.values() if e.kind == 'radio']}")
        radio = s.find("radio", "Your answer")        # a radio's value is its option's text (Streamlit 1.67)
        t0 = time.perf_counter()
        await s.click(s.find_button("Send"), {radio.id: ("string_value", radio.options[0])})
        if not await s.wait_until(lambda: s.has_text("Your answer is in"), 15) and box():
            self.repeated += 1                      # the form is still there after 15 s: send again
            await s.click(s.find_button("Send"), {radio.id: ("string_value", radio.options[0])})
        if not await s.wait_until(lambda: s.has_text("Your answer is in"), 60):
            raise TimeoutError(f"answer not confirmed within 60 s: {self.why(t0)}; "
                               f"{[t[:60] for t in s.texts(0) if 'answer' in t.lower()]}")

    async def following(self) -> bool:
        return self.s.has_text("following the lecturer")

    def why(self, t0: float) -> str:
        """What a student who missed a move last had: full runs and fragment runs since the click."""
        runs = [f"{t - t0:.1f}s {h!r}" for t, h in self.s.shown if t >= t0 - 5]
        polls = [round(t - t0, 1) for t in self.s.fragment_runs if t >= t0 - 5]
        side = [t for t in self.s.texts(1) if t.startswith("**Class")]
        side.append([f"{t - t0:.2f} {m}" for t, m in self.s.log if t0 - 3 < t < t0 + 4])
        return f"(protocol) full runs {runs}, polls {polls[:3]}...{polls[-3:]}, {side}, errors {self.s.errors[:2]}"

    async def exceptions(self) -> int:
        return sum(e.kind == "exception" for e in self.s.elements.values())


class BrowserLecturer:
    """The lecturer in a Chromium page (what the projector shows)."""

    def __init__(self, page):
        self.pg = page

    async def start(self) -> str:
        await self.pg.get_by_role("button", name="Start a class").click()
        await self.pg.wait_for_function("() => document.body.innerText.includes('Join code:')", timeout=60_000)
        await _idle(self.pg)
        return re.search(r"[?&]class=([A-Z0-9]{6})", self.pg.url).group(1)

    async def ready(self) -> None:
        await _idle(self.pg)

    async def next(self, title: str) -> None:
        await self.pg.get_by_role("button", name="Next ▶").click()
        await self.pg.wait_for_function(f"t => ({TITLE_JS})() === t", arg=title, timeout=60_000)
        await _idle(self.pg)

    async def ask(self) -> None:
        await self.pg.get_by_text("Ask the room a question").click(timeout=90_000)
        await self.pg.get_by_text("Which transfer-learning scenario?").click()
        await _idle(self.pg)
        await self.pg.get_by_role("button", name="Ask the room").click()

    async def ask_again(self) -> None:
        await self.pg.get_by_role("button", name="Ask the room").click()

    async def reveal(self) -> None:
        await self.pg.get_by_role("button", name="Reveal the answer").click()

    async def exceptions(self) -> int:
        return await self.pg.locator('[data-testid="stException"]').count()


class ProtocolLecturer:
    """The lecturer over Streamlit's protocol: the same clicks, without a fourth Chromium page laying
    out every stop on the 2 cores the replicas use."""

    def __init__(self, session: ProtocolSession):
        self.s = session

    async def start(self) -> str:
        await self.s.open()
        await self.s.wait_until(self.s.run_done.is_set, 180)
        await self.s.click(self.s.find_button("Start a class"))
        return re.search(r"(?:^|&)class=([A-Z0-9]{6})", self.s.query).group(1)

    async def ready(self) -> None:
        await self.s.wait_until(self.s.run_done.is_set, 120)

    async def next(self, title: str) -> None:
        await self.s.click(self.s.find_button("Next ▶"))
        await self.s.wait_until(lambda: self.s.heading() == title and self.s.run_done.is_set(), 60)

    async def ask(self) -> None:
        kind = self.s.find("radio", "Question")
        await self.s.set({kind.id: ("string_value", "Which transfer-learning scenario?")})
        await self.s.click(self.s.find_button("Ask the room"))

    async def ask_again(self) -> None:
        await self.s.click(self.s.find_button("Ask the room"))

    async def reveal(self) -> None:
        await self.s.click(self.s.find_button("Reveal the answer"))

    async def exceptions(self) -> int:
        return sum(e.kind == "exception" for e in self.s.elements.values())


async def _class(port: int, n: int, browsers: int, stops: int, questions: int, results: Path,
                 lecturer_in: str = "protocol") -> dict:
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

        if lecturer_in == "browser":
            lec = BrowserLecturer(await page_on("r1", f"{base}/lecture?stop={STOPS[0].slug}"))
        else:
            lec = ProtocolLecturer(ProtocolSession(base, "lecture", f"stop={STOPS[0].slug}", cookies={COOKIE: "r1"}))
        code = await lec.start()

        async def join(i: int):
            replica = "r1" if i % 2 else "r2"
            if i < browsers:
                pg = await page_on(replica, f"{base}/lecture?class={code}")
                await pg.get_by_role("button", name="Join the class").click()
                await pg.wait_for_function("() => document.body.innerText.includes('following the lecturer')",
                                           timeout=120_000)
                return BrowserStudent(pg)
            s = ProtocolSession(base, "lecture", f"class={code}", cookies={COOKIE: replica})
            await s.open()
            await s.wait_until(s.run_done.is_set, 120)
            nick = s.find_widget("text_input", "Nickname (optional, shown on the class board)")
            await s.click(s.find_button("Join the class"), {nick: ("string_value", f"student{i}")})
            if not await s.wait_until(lambda: s.has_text("following the lecturer"), 120):
                raise RuntimeError(f"student {i} did not join: {s.texts(1)[:6]} {s.errors}")
            return ProtocolStudent(s)

        t_join = time.perf_counter()
        students = []
        for start in range(0, n, 5):                 # five at a time: a class arrives over a minute or two
            students += await asyncio.gather(*(join(i) for i in range(start, min(n, start + 5))))
        join_s = time.perf_counter() - t_join
        settle_s = await _settled(port)

        delays: dict[str, list[float]] = {"browser": [], "protocol": []}
        by_move: list[float | None] = []               # each move's p95, all students
        missed = 0
        per_move: list[int] = []                   # students who arrived, move by move
        missed_by: list[int] = [0] * n             # moves each student missed
        missed_at: list[str] = []                  # "move k: student i (kind)" for every miss
        repeated: list[str] = []                   # clicks that had to be made again
        asked = 0
        store = ClassStore(results / "classes.sqlite")
        cpu0, t_moves = sum(_cpu_s(pid) for pid in _replicas(port)), time.perf_counter()
        for move in range(stops):
            await lec.ready()
            # the next stop's title, known in advance: the page's own header can still be the old stop's
            # for a moment after the click (reading it then counted every student as never arriving).
            # The students are watched from the click on, while the lecturer's page draws the stop.
            title = STOPS[move + 1].title
            t0 = time.perf_counter()
            moved = asyncio.create_task(lec.next(title))
            got = await asyncio.gather(*(st_.arrives(title, t0) for st_ in students))
            await moved
            by_move.append(_pct([d for d in got if d is not None], 0.95))
            for st_, d in zip(students, got):
                if d is not None:
                    delays["browser" if isinstance(st_, BrowserStudent) else "protocol"].append(d)
            missed += sum(d is None for d in got)
            per_move.append(sum(d is not None for d in got))
            for i, d in enumerate(got):
                missed_by[i] += d is None
                if d is None:
                    missed_at.append(f"move {move} to {title!r}: student {i} " + students[i].why(t0))
            if asked < questions and move % max(1, stops // questions) == 0:
                await lec.ask()
                asked += 1
                # as a lecturer does when no tally appears: press again (counted; Streamlit can drop a
                # click whose run a fragment's timer cut short, see pages/class_views._poll)
                for _ in range(3):
                    if await _until(lambda: (store.state(code).question or 0) >= asked, 10):
                        break
                    repeated.append(f"lecturer: Ask the room (question {asked})")
                    await lec.ask_again()

                async def answer(st_):
                    try:
                        await st_.answer()
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"answer: {str(e)[:900]}")

                await asyncio.gather(*(answer(st_) for st_ in students))
                await lec.reveal()
        moves_s = time.perf_counter() - t_moves
        cpu_s = sum(_cpu_s(pid) for pid in _replicas(port)) - cpu0
        stt = store.state(code)
        answers = sum(store.tally(code, q).total for q in range(1, asked + 1))
        exceptions = await lec.exceptions()
        still_following = 0
        for st_ in students:
            exceptions += await st_.exceptions()
            still_following += await st_.following()   # at the end: still following, or detached
        for st_ in students:
            if isinstance(st_, ProtocolStudent):
                errors += [f"protocol: {e}" for e in st_.s.errors]
                await st_.s.close()
        if isinstance(lec, ProtocolLecturer):
            await lec.s.close()
        await browser.close()
        store.close()
    every = delays["browser"] + delays["protocol"]
    finished = [f for x in students if isinstance(x, ProtocolStudent) for f in x.finished]
    return {"students": n, "browser_students": min(browsers, n), "moves": stops, "join_s": round(join_s, 1),
            "settle_s": round(settle_s, 1), "p95_by_move_s": by_move,
            "p50_s": _pct(every, 0.5), "p95_s": _pct(every, 0.95), "max_s": _pct(every, 1.0),
            "protocol_p50_s": _pct(delays["protocol"], 0.5), "protocol_p95_s": _pct(delays["protocol"], 0.95),
            "browser_p50_s": _pct(delays["browser"], 0.5), "browser_p95_s": _pct(delays["browser"], 0.95),
            "protocol_run_finished_p50_s": _pct(finished, 0.5), "protocol_run_finished_p95_s": _pct(finished, 0.95),
            "protocol_runs_not_finished_in_30s": len(delays["protocol"]) - len(finished),
            "arrivals": len(every), "never_arrived": missed,
            "questions": asked, "answers_lost": asked * n - answers, "joined": stt.joined,
            "page_errors": len(errors), "exceptions_on_pages": exceptions, "error_samples": errors[:3],
            "arrived_per_move": per_move, "students_missing_every_move": sum(m == stops for m in missed_by),
            "students_missing_some_moves": sum(0 < m < stops for m in missed_by),
            "still_following_at_end": still_following, "missed": missed_at[:20],
            "clicks_repeated": len(repeated) + sum(getattr(x, "repeated", 0) for x in students),
            "lecturer_clicks_repeated": repeated,
            "replica_cpu_s": round(cpu_s, 1), "moves_wall_s": round(moves_s, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", default="10,25,50")
    ap.add_argument("--browsers", type=int, default=3,
                    help="how many of the students are Chromium pages (the others speak Streamlit's protocol)")
    ap.add_argument("--stops", type=int, default=10)
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--unprepared", action="store_true",
                    help="skip preparing the visited stops (by default they are prepared as a lecturer does "
                         "before class, with the tiny run settings so that it takes seconds)")
    ap.add_argument("--lecturer", choices=["protocol", "browser"], default="protocol",
                    help="the lecturer's page over Streamlit's protocol (default) or in Chromium")
    ap.add_argument("--push", default="on", help="on, off or on,off: the server pushes a move to followers "
                    "(pages/class_push.py), or only their pages' one-second poll finds it; both in one sitting "
                    "with on,off")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    rows = []
    for n, push in [(int(x), p) for x in a.students.split(",") for p in a.push.split(",")]:
        port = free_port(2)
        results = Path(tempfile.mkdtemp(prefix="convnetlab-bench-class-"))
        env = {**os.environ, "CONVNETLAB_RESULTS": str(results), "CONVNETLAB_CLASS_PUSH": "0" if push == "off" else "1"}
        env.pop("CONVNETLAB_CLASS_POLL_S", None)
        env.pop("RAY_ADDRESS", None)
        log = results / "serve-class.log"
        if not a.unprepared:                       # what "Ready before class" does, for the stops visited
            subprocess.run([sys.executable, "-m", "core", "lecture", "prepare", "--runs", "tiny", "--only",
                            *(s.slug for s in STOPS[:a.stops + 1])], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        proc = start_class(port, 2, env, log)
        try:
            row = asyncio.run(_class(port, n, a.browsers, a.stops, a.questions, results, a.lecturer))
            row["replica_mb"] = [round(_rss_mb(pid)) for pid in _replicas(port)]
        finally:
            stop_class(proc)
        row["load_avg_1m"] = round(os.getloadavg()[0], 1)
        row["stops_prepared"] = not a.unprepared
        row["push"] = push
        row["lecturer"] = a.lecturer
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"machine": os.uname().nodename, "cores": os.cpu_count(),
                                                "when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
