"""A hosted class (scripts/serve-class.sh under scripts/class_supervisor.py): a local Ray head, two
dashboard replicas and HAProxy with cookie-sticky sessions, all on loopback.

One class serves the module's tests that leave it running (a run watched and cancelled across
replicas, the sockets and tokens, long links, a second start on its port, a replica killed and
restarted); the tests that stop a class start their own, so no test depends on running last."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.browser import CHROMIUM, IDLE
from bench.browser import CHROMIUM_ARGS as ARGS
from tests.conftest import ROOT

COOKIE = "CONVNETLAB_REPLICA"
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"CLASS TESTS SKIPPED: no Chromium at {CHROMIUM}", allow_module_level=True)


def _env(tmp: Path, **extra: str) -> dict:
    env = {**os.environ, "CONVNETLAB_RESULTS": str(tmp), **extra}
    if "RAY_ADDRESS" not in extra:
        env.pop("RAY_ADDRESS", None)
    return env


def _state(port: int) -> dict:
    from bench.bench_class import run_folder

    return json.loads((run_folder(port) / "state.json").read_text())


def _session(sid: int) -> list[int]:
    """Live processes of a session, from ps (not from the supervisor's own /proc reading)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True, check=True).stdout
    return [int(p) for p, s, st in (line.split() for line in out.splitlines()) if int(s) == sid and "Z" not in st]


def _listening() -> list[tuple[str, int, set[int], str]]:
    """Every listening TCP socket: (address, port, pids, process names), from `ss -ltnp`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        users = re.findall(r'\("([^"]*)",pid=(\d+)', line)
        rows.append((addr.strip("[]"), int(port), {int(p) for _, p in users}, ",".join(sorted({n for n, _ in users}))))
    return rows


def _up(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _health(port: int) -> bool:
    try:
        with HTTP.open(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.read() == b"ok"
    except OSError:
        return False


def _haproxy(port: int) -> dict[str, str]:
    """Each replica's status as HAProxy's stats socket reports it."""
    from bench.bench_class import run_folder

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(run_folder(port) / "haproxy.sock"))
        s.sendall(b"show stat\n")
        raw = b"".join(iter(lambda: s.recv(65536), b"")).decode().splitlines()
    head = raw[0].lstrip("# ").split(",")
    rows = [dict(zip(head, line.split(","))) for line in raw[1:] if line]
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == "dashboards" and r["svname"].startswith("r")}


def _until(what: str, ok, timeout: float = 60) -> None:
    end = time.time() + timeout
    while not ok():
        assert time.time() < end, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)


# --- gRPC without a client library: enough HTTP/2 to read a call's grpc-status -------------------------

def _hpack(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing, plain strings (RFC 7541, 6.2.2)."""
    return b"\x00" + bytes([len(name)]) + name + (bytes([len(value)]) if len(value) < 127
                                                  else b"\x7f" + bytes([len(value) - 127])) + value


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _grpc_status(port: int, method: str, token: str | None) -> int:
    """The grpc-status of a unary call with an empty message (every field at its default), sent with
    `authorization: Bearer <token>` (none when `token` is None). gRPC's C++ core sends grpc-status
    as a plain (not Huffman-coded) literal, so the trailers are read without an HPACK decoder."""
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", method.encode()),
              (b":authority", f"127.0.0.1:{port}".encode()), (b"content-type", b"application/grpc"),
              (b"te", b"trailers")] + ([(b"authorization", f"Bearer {token}".encode())] if token is not None else [])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b"")
                  + _frame(1, 4, 1, b"".join(_hpack(k, v) for k, v in fields))   # HEADERS, END_HEADERS
                  + _frame(0, 1, 1, b"\x00\x00\x00\x00\x00"))                      # DATA, END_STREAM
        buf, headers = b"", b""
        while True:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed before the call ended ({headers!r})")
                buf += chunk
            n, kind, flags, stream = int.from_bytes(buf[:3], "big"), buf[3], buf[4], int.from_bytes(buf[5:9], "big")
            payload, buf = buf[9:9 + n], buf[9 + n:]
            if kind == 4 and not flags & 1:
                s.sendall(_frame(4, 1, 0, b""))                                      # SETTINGS ACK
            elif kind == 1 and stream == 1:
                headers += payload
                if flags & 1:
                    break
            elif kind in (3, 7):                                                      # RST_STREAM, GOAWAY
                raise ConnectionError(f"the server ended the call (frame type {kind})")
    m = re.search(rb"grpc-status([\x00-\x7f])", headers)
    assert m, f"no plain grpc-status in {headers!r}"
    return int(headers[m.end():m.end() + m.group(1)[0]])


# One harmless method of each Ray gRPC service that listens on a TCP port: GCS, raylet (node manager),
# object manager, core worker (drivers, the job board, workers). A server answers a method it lacks
# with UNIMPLEMENTED (12) before any token check, and a call without the right token with
# UNAUTHENTICATED (16).
RAY_METHODS = ("/ray.rpc.NodeInfoGcsService/GetAllNodeInfo", "/ray.rpc.NodeManagerService/GetNodeStats",
               "/ray.rpc.ObjectManagerService/Pull", "/ray.rpc.CoreWorkerService/NumPendingTasks")


def _token_check(port: int, token: str) -> str:
    """What a listening Ray port does with a call that lacks the token or has a wrong one."""
    for method in RAY_METHODS:
        try:
            without = _grpc_status(port, method, None)
        except (ConnectionError, AssertionError, TimeoutError):
            break                                            # not gRPC: try HTTP
        if without == 12:
            continue
        wrong = _grpc_status(port, method, "0" * len(token))
        return f"grpc {method.split('/')[1]}: none {without}, wrong {wrong}"
    codes = []
    for auth in (None, "0" * len(token)):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/get_or_create_runtime_env", data=b"", method="POST",
                                     headers={"authorization": f"Bearer {auth}"} if auth else {})
        try:
            codes.append(HTTP.open(req, timeout=5).status)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
    return f"http: none {codes[0]}, wrong {codes[1]}"


# --- the module's class --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    from bench.bench_class import free_port, start_class, stop_class

    port = free_port(2)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    proc = start_class(port, 2, _env(tmp_path_factory.mktemp("class-results"), CONVNETLAB_LECTURE_RUNS="tiny"),
                       ROOT / "test-artifacts" / "serve-class.log")
    try:
        yield proc, port
    finally:
        stop_class(proc)


def _wait(pg) -> None:
    pg.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    time.sleep(0.3)
    pg.wait_for_selector(IDLE, timeout=120_000)


def test_a_run_started_on_one_replica_is_watched_and_cancelled_on_the_other(hosted):
    from playwright.sync_api import sync_playwright

    _, port = hosted
    base = f"http://127.0.0.1:{port}"
    assert urllib.request.urlopen(base + "/_stcore/health", timeout=5).read() == b"ok"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            a = browser.new_context(viewport={"width": 1280, "height": 900})
            pa = a.new_page()
            pa.goto(base + "/transfer")
            _wait(pa)
            cookies = {c["name"]: c["value"] for c in a.cookies()}
            assert cookies.get(COOKIE) in {"r1", "r2"}             # the balancer pinned this browser
            assert "_streamlit_xsrf" in cookies                      # XSRF protection is on
            pa.get_by_text("generated shapes & textures").click()   # a run long enough to watch: fine-tune,
            _wait(pa)                                                  # 30 epochs
            pa.get_by_text("fine-tune (discriminative LRs)").click()
            _wait(pa)
            epochs = pa.locator('[data-testid="stSlider"]').filter(has_text="Epochs").get_by_role("slider")
            epochs.focus()
            epochs.press("End")
            _wait(pa)
            pa.get_by_role("button", name="Train").click()
            pa.wait_for_function("document.body.innerText.includes('step ')", timeout=180_000)
            link = pa.url.split("/transfer", 1)[1]
            assert "sid=" in link and "job=" in link

            other = "r2" if cookies[COOKIE] == "r1" else "r1"
            b = browser.new_context(viewport={"width": 1280, "height": 900})
            b.add_cookies([{"name": COOKIE, "value": other, "url": base}])  # a reload that lands elsewhere
            pb = b.new_page()
            pb.goto(base + "/transfer" + link)
            _wait(pb)
            assert {c["name"]: c["value"] for c in b.cookies()}[COOKIE] == other
            pb.wait_for_function("document.body.innerText.includes('step ')", timeout=60_000)   # watched there
            pb.get_by_role("button", name="Cancel").click()
            pb.wait_for_function("document.body.innerText.includes('Cancelled')", timeout=30_000)
            pa.reload()                                              # and the first replica agrees
            _wait(pa)
            pa.wait_for_function("document.body.innerText.includes('Cancelled')", timeout=30_000)
            assert not pa.query_selector_all('[data-testid="stException"]')
            assert not pb.query_selector_all('[data-testid="stException"]')
        finally:
            browser.close()


def _visit_both_replicas(port: int) -> None:
    """Opens the Studio through each replica, so each has connected to Ray (its driver's port) and the
    job board and its worker run."""
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for replica in ("r1", "r2"):
                ctx = browser.new_context()
                ctx.add_cookies([{"name": COOKIE, "value": replica, "url": base}])
                pg = ctx.new_page()
                pg.goto(base + "/transfer")
                _wait(pg)
                assert not pg.query_selector_all('[data-testid="stException"]')
                ctx.close()
        finally:
            browser.close()


def test_every_port_of_the_class_listens_on_loopback_and_every_ray_port_wants_the_token(hosted):
    from bench.bench_class import run_folder

    _, port = hosted
    _visit_both_replicas(port)
    st = _state(port)
    replicas = {st["children"]["replica 1"], st["children"]["replica 2"]}

    def of_class() -> list[tuple[str, int, set[int], str]]:
        pids = set(_session(st["sid"]))
        return [row for row in _listening() if row[2] & pids]

    def complete() -> bool:
        names = " ".join(row[3] for row in of_class())
        ray_ports = {row[2].pop() for row in of_class() if row[2] <= replicas and row[1] not in (port + 1, port + 2)}
        return "JobBoard" in names and "JobWorker" in names and ray_ports == replicas

    _until("the job board, a worker and both replicas' Ray drivers listen", complete)
    mine = of_class()
    report = "\n".join(f"{a}:{p} {names}" for a, p, _, names in mine)
    assert {port, port + 1, port + 2, port + 100} <= {p for _, p, _, _ in mine}, report   # the test sees the class
    assert {"gcs_server", "raylet", "haproxy"} <= {n for *_, names in mine for n in names.split(",")}, report
    outside = [(a, p, names) for a, p, _, names in mine if a not in LOOPBACK]
    assert not outside, f"listening beyond loopback:\n{report}"

    token = (run_folder(port) / "ray-token").read_text().strip()
    assert _grpc_status(port + 100, RAY_METHODS[0], token) == 0          # the probe tells a good token apart
    checks = {(p, names): _token_check(p, token) for _, p, _, names in mine if p not in (port, port + 1, port + 2)}
    table = "\n".join(f"{p} {names}: {how}" for (p, names), how in checks.items())
    (ROOT / "test-artifacts" / "class-ports.txt").write_text(f"{report}\n\ntoken checks:\n{table}\n")
    refused = {k for k, how in checks.items() if how.endswith(("none 16, wrong 16", "none 401, wrong 403"))}
    assert refused == set(checks), f"a Ray port that does not refuse a call without the token:\n{table}"
    assert any("ObjectManagerService" in how for how in checks.values()), table
    assert any("CoreWorkerService" in how for how in checks.values()), table


def test_a_15000_character_link_passes_the_balancer(hosted):
    from playwright.sync_api import sync_playwright

    _, port = hosted
    link = "/transfer?sid=x&note=" + "a" * (15_000 - len("/transfer?sid=x&note="))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pg = browser.new_page()
            for q in (port + 1, port):   # a replica takes it, and so does the balancer (with a browser's
                r = pg.goto(f"http://127.0.0.1:{q}{link}")   # headers, HAProxy's default buffer refused it)
                assert r is not None and r.status == 200, (q, r and r.status, pg.content()[:200])
                _wait(pg)
                assert not pg.query_selector_all('[data-testid="stException"]')
        finally:
            browser.close()


def test_a_second_start_on_the_port_names_the_running_class_in_one_line(hosted, tmp_path):
    proc, port = hosted
    st = _state(port)
    out = subprocess.run(["bash", "scripts/serve-class.sh", "--replicas", "2", "--port", str(port)], cwd=ROOT,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 3, out.stdout + out.stderr
    line = out.stderr.strip().splitlines()[-1]                # after whatever setup.sh printed
    assert f"already running on port {port}" in line and f"`kill {proc.pid}`" in line, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert _state(port)["supervisor"] == st["supervisor"] and _health(port)   # and left it alone


def test_a_replica_that_dies_is_restarted_and_the_class_keeps_serving(hosted):
    _, port = hosted
    log = ROOT / "test-artifacts" / "serve-class.log"
    old = _state(port)["children"]["replica 1"]
    assert _haproxy(port) == {"r1": "UP", "r2": "UP"}
    os.kill(old, signal.SIGKILL)
    served, failed, end = 0, 0, time.time() + 60
    while time.time() < end and "replica 1 serves again" not in log.read_text():
        if _health(port):
            served += 1
        else:
            failed += 1
        time.sleep(0.1)
    text = log.read_text()
    assert f"replica 1 (pid {old}) exited with code -9" in text, text[-2000:]
    assert "replica 1 serves again" in text, text[-2000:]
    assert failed == 0 and served > 5, (served, failed)          # the other replica took every request
    new = _state(port)["children"]["replica 1"]
    assert new != old and _health(port + 1)
    _until("HAProxy sees replica 1 UP again", lambda: _haproxy(port) == {"r1": "UP", "r2": "UP"}, 20)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/health", headers={"Cookie": f"{COOKIE}=r1"})
    assert HTTP.open(req, timeout=5).read() == b"ok"


# --- classes of their own: stopping, a killed script, a dead supervisor, a failed start ---------------

def _gone(port: int, st: dict, replicas: int) -> None:
    """Everything of the class whose state was `st` has stopped, and its folders are gone."""
    from bench.bench_class import run_folder

    _until("the class's processes end", lambda: not _session(st["sid"]), 30)
    assert not any(_up(q) for q in [port + 100] + [port + i for i in range(replicas + 1)])
    assert not run_folder(port).exists()                   # the token, HAProxy's socket, Ray's temp dir


def test_kill_9_of_the_script_then_a_start_recovers_and_a_stop_stops_only_that_class(hosted, tmp_path):
    from bench.bench_class import free_port, run_folder, start_class, stop_class

    _, other = hosted                                       # a class that must outlive this one's stops
    other_pids = _session(_state(other)["sid"])
    port = free_port(1)
    env = _env(tmp_path)
    log = tmp_path / "serve-class.log"
    folder_failed = Path(str(run_folder(port)) + "-failed")
    try:
        # 1. kill -9 of the script: its supervisor stops everything.
        proc = start_class(port, 1, env, log)
        first = _state(port)
        assert (run_folder(port) / "ray" / "session_latest").exists()   # Ray's session folder is the class's
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _gone(port, first, 1)

        # 2. A start right after recovers in one step; then the supervisor itself dies with the script.
        proc = start_class(port, 1, env, log)
        second = _state(port)
        os.kill(second["supervisor"], signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        time.sleep(1)
        assert len(_session(second["sid"])) >= 8           # Ray's head processes, the replica, HAProxy

        # 3. The next start stops those leftovers (provably that class's) and says so in one line.
        proc = start_class(port, 1, env, log)
        text = log.read_text()
        assert f"supervisor pid {second['supervisor']}" in text and "leftover processes" in text, text
        assert not _session(second["sid"])
        assert (folder_failed / "supervisor.log").exists()

        # 4. Stopping the class (SIGTERM, Ctrl-C's twin) stops everything it started, and only that.
        third = _state(port)
        stop_class(proc)
        assert proc.returncode == 0, log.read_text()[-2000:]
        _gone(port, third, 1)
        assert set(other_pids) <= set(_session(_state(other)["sid"])) and _health(other)
    finally:
        shutil.rmtree(folder_failed, ignore_errors=True)


def test_a_failed_start_says_why_in_one_line_and_keeps_its_logs(tmp_path):
    from bench.bench_class import free_port, run_folder

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "haproxy").write_text("#!/bin/sh\necho '[ALERT] a balancer that cannot start' >&2\nexit 1\n")
    (fake / "haproxy").chmod(0o755)
    port = free_port(1)
    # An existing cluster's address: no Ray head is started (the replica connects on a page's first run).
    env = _env(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", RAY_ADDRESS="127.0.0.1:1")
    folder_failed = Path(str(run_folder(port)) + "-failed")
    try:
        out = subprocess.run(["bash", "scripts/serve-class.sh", "--replicas", "1", "--port", str(port)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=240, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("the class did not start: haproxy exited (code 1)"), out.stderr
        assert "a balancer that cannot start" in last and str(folder_failed) in last, last
        assert {"replica-1.log", "haproxy.log", "supervisor.log"} <= {f.name for f in folder_failed.iterdir()}
        assert not run_folder(port).exists() and not _up(port + 1)
    finally:
        shutil.rmtree(folder_failed, ignore_errors=True)


# --- class mode through the balancer: a lecturer and three students on two replicas, one killed ----------

def _stop_title(pg) -> str:
    return pg.locator('[data-testid="stMainBlockContainer"] h2').first.inner_text().strip()


def _text_on(pg, text: str, timeout: float = 30_000) -> None:
    pg.wait_for_function(f"document.body.innerText.includes({json.dumps(text)})", timeout=timeout)


def test_a_class_follows_its_lecturer_across_replicas_with_one_killed(hosted):
    """Start, join, follow, detach and re-attach, a replica killed (its students reconnect to the
    other and keep following, their membership kept), a question answered and revealed, a student's
    tiny live run on the class board, and the end of the class."""
    from playwright.sync_api import sync_playwright

    _, port = hosted
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pages = []
        try:
            def page_on(replica: str, url: str):
                ctx = browser.new_context(viewport={"width": 1024, "height": 768})
                ctx.add_cookies([{"name": COOKIE, "value": replica, "url": base}])
                pg = ctx.new_page()
                pages.append(pg)
                pg.goto(url)
                _wait(pg)
                return pg

            lec = page_on("r2", base + "/lecture?stop=alexnet-conv1")
            lec.get_by_role("button", name="Start a class").click()
            _text_on(lec, "Join code:")
            _wait(lec)
            code = re.search(r"[?&]class=([A-Z0-9]{6})", lec.url).group(1)
            assert "lt=" in lec.url
            students = []
            for nick, replica in (("Ada", "r1"), ("Bo", "r1"), ("Cy", "r2")):
                pg = page_on(replica, f"{base}/lecture?class={code}")
                pg.get_by_label("Nickname (optional, shown on the class board)").fill(nick)
                pg.get_by_role("button", name="Join the class").click()
                _text_on(pg, "following the lecturer")
                assert "lt=" not in pg.url and not pg.get_by_role("button", name="Start a class").count()
                students.append(pg)
            _text_on(lec, "3 following now", 15_000)
            for pg in students:
                assert _stop_title(pg) == _stop_title(lec)

            # the lecturer moves: every follower is there within a few seconds
            lec.get_by_role("button", name="Next ▶").click()
            _wait(lec)
            title = _stop_title(lec)
            t0 = time.time()
            for pg in students:
                pg.wait_for_function("t => document.querySelector('[data-testid=\"stMainBlockContainer\"] h2')"
                                     "?.innerText.trim() === t", arg=title, timeout=15_000)
            assert time.time() - t0 < 10
            # Cy explores on her own, then comes back
            cy = students[2]
            cy.get_by_role("button", name="Explore on my own").click()
            _text_on(cy, "exploring on your own")
            lec.get_by_role("button", name="Next ▶").click()
            _wait(lec)
            students[0].wait_for_function("t => document.querySelector('[data-testid=\"stMainBlockContainer\"] h2')"
                                          "?.innerText.trim() === t", arg=_stop_title(lec), timeout=15_000)
            assert _stop_title(cy) == title != _stop_title(lec)
            cy.get_by_role("button", name="Back to the lecturer").click()
            _text_on(cy, "following the lecturer")
            _wait(cy)
            assert _stop_title(cy) == _stop_title(lec)

            # replica 1 dies mid-class: Ada and Bo reconnect through the balancer and keep following
            os.kill(_state(port)["children"]["replica 1"], signal.SIGKILL)
            lec.get_by_role("button", name="Next ▶").click()
            _wait(lec)
            for pg in students:
                pg.wait_for_function("t => document.querySelector('[data-testid=\"stMainBlockContainer\"] h2')"
                                     "?.innerText.trim() === t", arg=_stop_title(lec), timeout=60_000)
                _text_on(pg, "following the lecturer", 30_000)

            # a question: the scenario question, answered by all three, revealed
            lec.get_by_text("Ask the room a question").click()
            lec.get_by_text("Which transfer-learning scenario?").click()
            _wait(lec)
            lec.get_by_role("button", name="Ask the room").click()
            for pg in students:
                _text_on(pg, "Question from the lecturer", 20_000)
                _wait(pg)
                pg.locator('[data-testid="stMain"] [data-testid="stForm"] [role="radiogroup"] label').first.click()
                pg.get_by_role("button", name="Send").click()
                _text_on(pg, "Your answer is in")
            _text_on(lec, "Answers so far: 3", 20_000)
            lec.get_by_role("button", name="Reveal the answer").click()
            for pg in students:
                _text_on(pg, "Answer:", 20_000)

            # a class run: Bo trains the degradation stop's (tiny) run; it joins the lecturer's board
            lt = re.search(r"[?&]lt=([0-9a-f]+)", lec.url).group(1)
            lec.goto(f"{base}/lecture?stop=degradation&class={code}&lt={lt}")
            _wait(lec)
            bo = students[1]
            bo.wait_for_function("() => document.body.innerText.includes('Train it live')", timeout=30_000)
            _wait(bo)
            bo.get_by_role("button", name="Train it live").click()
            _text_on(lec, "The class's runs (1, best first)", 120_000)
            lec.wait_for_function("() => document.body.innerText.includes('Bo') "
                                  "&& document.body.innerText.includes('done')", timeout=180_000)
            assert lec.get_by_role("link", name="Show this run (read-only)").count() == 1

            lec.get_by_role("button", name="End the class").click()
            for pg in students:
                _text_on(pg, f"Class {code} has ended.", 20_000)
            for pg in [lec, *students]:
                assert not pg.query_selector_all('[data-testid="stException"]')
        except Exception:
            for i, pg in enumerate(pages):            # what each screen showed, for whoever reads the failure
                pg.screenshot(path=str(ROOT / "test-artifacts" / f"class-mode-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()
