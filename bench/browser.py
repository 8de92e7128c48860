"""A real dashboard server and headless Chromium for the benchmarks that measure what a user sees."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"      # Debian's
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


class ServerDidNotStart(RuntimeError):
    """The dashboard server never answered its health check."""


@contextlib.contextmanager
def streamlit_process(log: IO | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Starts `streamlit run app.py` on a free loopback port (its output to `log`); yields its base
    URL and its process once healthy (ServerDidNotStart if it never is); stops it. A server that has not
    ended 20 s after SIGTERM is made to print every thread's stack (faulthandler, on SIGABRT) into
    `log`, killed, and reported with that stack and the processes it left (RuntimeError)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--server.fileWatcherType", "none"], cwd=ROOT,
                              stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise ServerDidNotStart("the app did not start")
        yield base, server
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the dashboard server did not stop on SIGTERM:\n" + _hung(server, log)) from None


def _hung(server: subprocess.Popen, log: IO | None) -> str:
    """What a server that ignores SIGTERM is doing: its processes, then the stacks of its threads
    (the end of `log`, where faulthandler prints them on SIGABRT). Kills it."""
    rows = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"], capture_output=True, text=True).stdout.splitlines()
    parent = {int(r.split()[0]): int(r.split()[1]) for r in rows[1:]}

    def descends(pid: int) -> bool:
        while pid > 1 and pid != server.pid:
            pid = parent.get(pid, 0)
        return pid == server.pid

    tree = rows[:1] + [r[:200] for r in rows[1:] if descends(int(r.split()[0]))]
    server.send_signal(signal.SIGABRT)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    stacks = ""
    if log is not None and getattr(log, "name", None):
        log.flush()
        with open(log.name, errors="replace") as f:
            stacks = f.read()[-6000:]
    return "\n".join(tree) + "\n" + stacks


@contextlib.contextmanager
def streamlit_server(log: IO | None = None) -> Iterator[str]:
    """`streamlit_process`, yielding only the base URL. Used by the benchmarks and the tests."""
    with streamlit_process(log) as (base, _):
        yield base


def load(page, url: str) -> float:
    """Seconds from navigation to the page's script having finished (the app idle)."""
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    time.sleep(0.05)
    page.wait_for_selector(IDLE, timeout=120_000)
    return time.perf_counter() - t
