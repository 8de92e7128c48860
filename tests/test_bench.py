"""The benchmarks' and browser tests' own harness (bench/browser.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def test_a_server_that_ignores_sigterm_is_reported_with_its_stacks_and_its_children(tmp_path):
    """What the harness reports for a server that does not stop: the processes it left (here a child
    it started) and, from faulthandler, the stack of the thread that kept it; and it is gone after."""
    from bench.browser import _hung

    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print('ready', child.pid, flush=True)\n"
              "def waiting_for_a_worker():\n"
              "    time.sleep(60)\n"
              "waiting_for_a_worker()\n")
    with open(tmp_path / "server.log", "w+") as log:
        server = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        for _ in range(100):
            if (tmp_path / "server.log").read_text().startswith("ready"):
                break
            time.sleep(0.1)
        child = int((tmp_path / "server.log").read_text().split()[1])
        server.terminate()
        report = _hung(server, log)
    try:
        assert server.poll() is not None
        lines = report.splitlines()
        assert any(line.split()[:2] == [str(child), str(server.pid)] for line in lines[1:])
        assert "waiting_for_a_worker" in report and "Fatal Python error: Aborted" in report
    finally:
        os.kill(child, 9)
