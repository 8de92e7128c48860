"""The supervisor of a hosted class, started by scripts/serve-class.sh (standard library only).

It runs in a session of its own, so it outlives a crash of the script that started it, and it owns
every process of the class: a Ray head (`ray start --head --block`: ending that one process ends the
head's GCS, raylet, agents and workers), N dashboard replicas and HAProxy in front of them. It

- starts them in order and says "== ready" only once every replica answers its health check,
  HAProxy's stats socket reports every replica UP and the balancer itself answers (HAProxy's first
  check used to find the replicas still starting and mark them DOWN);
- restarts a replica (or HAProxy) that exits, with a back-off, and says so;
- stops what it started, and nothing else, when the script ends however it ends (the script's pid
  is watched: kill -9 included), on SIGTERM/SIGINT/SIGHUP, or when the Ray head exits;
- keeps its state in a run folder named by the balancer's port, <tmp>/convnetlab-class-PORT:
  state.json, the Ray token, Ray's temp dir (the session folder Ray would leave in /tmp/ray),
  HAProxy's config and stats socket, the logs. A clean stop removes the folder; a failed start, or
  the leftovers of a class whose supervisor died, keep their logs in <tmp>/convnetlab-class-PORT-failed.

A run folder whose lock no process holds belongs to a class whose supervisor is gone (kill -9, a
crash): the next start on that port stops its leftover processes -- only those in the dead
supervisor's session that carry its marker (CONVNETLAB_CLASS) in their environment -- and goes on.
A class that still runs on the port is named in one line, with how to stop it.

Every port of the class listens on loopback, except the balancer on --bind: with a loopback Ray
address Ray's gRPC servers bind 127.0.0.1 only when the node address is 127.0.0.1 itself (Ray 2.60's
GrpcServer takes one flag, "localhost only", else it binds every interface), and `ray start` keeps
127.0.0.1 only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (otherwise it swaps in the machine's network
address). Worker nodes on other machines need a network address (CONVNETLAB_RAY_IP): then Ray's
servers listen on every interface, with the token required.

    python scripts/class_supervisor.py --port 8500 --replicas 2 --bind 127.0.0.1 --watch PID
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent              # the venv's bin: python, streamlit's, ray
START_DEADLINE_S = 240.0                       # the whole start: Ray head, replicas, balancer
STOP_GRACE_S = 20.0                            # SIGTERM, then this long, then SIGKILL
BACKOFF_S = (1, 2, 4, 8, 16, 30)               # waits before restarting a child that exited
STABLE_S = 60.0                                # a child up this long starts its back-off afresh
TICK_S = 0.25
MARKER = "CONVNETLAB_CLASS"                    # in every process's environment: whose class it is
RUNNING = {"starting": "starting", "ready": "running", "stopping": "stopping"}   # state.json's status, said
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback, never via a proxy


class StartFailed(Exception):
    """The class could not start; the message is one line for the user."""


class StopRequested(Exception):
    """A signal or the script's end arrived while the class was starting."""


def run_dir(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"convnetlab-class-{port}"


def failed_dir(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"convnetlab-class-{port}-failed"


# --- processes, read from /proc ----------------------------------------------------------------------

def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, session id, start time in clock ticks) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()       # after "pid (comm)": state ppid pgrp session ...
    return fields[0], int(fields[3]), int(fields[19])


def alive(pid: int, started: int | None = None) -> bool:
    """The process runs (not a zombie) and, when `started` is given, is the one that started then."""
    st = proc_stat(pid)
    return st is not None and st[0] not in "ZX" and (started is None or st[2] == started)


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid`, but this one."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            st = proc_stat(int(entry.name))
            if st is not None and st[1] == sid and st[0] not in "ZX":
                out.append(int(entry.name))
    return out


def leftovers(sid: int, marker: str, since: int) -> list[int]:
    """The live processes of a dead supervisor's class: in its session, started after it, and carrying
    its marker in their environment or, for a process that rewrote its environment's memory with its
    title (Ray's agents, via setproctitle), a child of one that does."""
    members = [p for p in session_members(sid) if (proc_stat(p) or ("", 0, -1))[2] >= since]
    parent = {}
    for p in members:
        try:
            parent[p] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            parent[p] = 0
    ours = set()
    for p in members:
        try:
            if f"{MARKER}={marker}".encode() in Path(f"/proc/{p}/environ").read_bytes().split(b"\0"):
                ours.add(p)
        except OSError:
            pass
    grew = True
    while grew:
        grew = False
        for p in members:
            if p not in ours and parent[p] in ours:
                ours.add(p)
                grew = True
    return sorted(ours)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def port_owner(port: int) -> str:
    """Who listens on a TCP port ("pid 123 (cmd)"), from /proc/net/tcp and the processes' sockets."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:   # 0A: LISTEN
                inodes.add(f[9])
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{entry.name}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return f"pid {entry.name} ({cmdline(int(entry.name))[:80]})"
    return "a process this user cannot see"


def port_free(addr: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _HTTP.open(url, timeout=timeout) as r:
            return r.status == 200 and r.read(16).strip() == b"ok"
    except (OSError, http.client.HTTPException):    # not up yet, or something else answers on the port
        return False


def haproxy_states(sock: Path) -> dict[str, str]:
    """Each backend server's status ("UP", "DOWN", ...) from HAProxy's `show stat`."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    lines = raw.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:] if line]
    return {r["svname"]: r["status"] for r in rows
            if r.get("pxname") == "dashboards" and r["svname"] not in ("FRONTEND", "BACKEND")}


# --- the class's children ---------------------------------------------------------------------------

@dataclass
class Child:
    """One process the supervisor started (and restarts, unless it is the Ray head)."""

    name: str                                   # "ray", "replica 1", "haproxy"
    argv: list[str]
    log: Path
    env: dict[str, str]
    health: str = ""                            # a URL that answers "ok" once it serves
    pid: int = 0
    popen: subprocess.Popen | None = None       # kept alive: a dropped Popen may be reaped by subprocess
    started: float = 0.0
    exit_code: int | None = None                # set when reaped; None while it runs
    restarts: int = 0
    backoff: int = 0                            # index into BACKOFF_S
    restart_at: float = 0.0                     # when a restart is due (0: none pending)
    serving: bool = False                       # health answered since the last (re)start


class Supervisor:
    def __init__(self, port: int, replicas: int, bind: str, watch: int, run: Path) -> None:
        self.port, self.replicas, self.bind, self.watch = port, replicas, bind, watch
        self.watch_started = (proc_stat(watch) or ("", 0, 0))[2]
        self.run, self.logs = run, run / "logs"
        self.children: list[Child] = []
        self.stop_reason = ""
        st = proc_stat(os.getpid())
        assert st is not None
        self.sid, self.started = st[1], st[2]
        self.marker = f"{run}:{os.getpid()}:{self.started}"
        self.ray_address = os.environ.get("RAY_ADDRESS", "")
        self.ray_ip = os.environ.get("CONVNETLAB_RAY_IP", "127.0.0.1")
        self.ray_port = port + 100 if port + 100 <= 65535 else 6380
        self.env = {**os.environ, MARKER: self.marker, "CONVNETLAB_RUNNER": "ray"}
        if not self.ray_address and ipaddress.ip_address(self.ray_ip).is_loopback:
            # Without it `ray start` swaps 127.0.0.1 for the machine's network address (and Ray's gRPC
            # servers then listen on every interface), and a replica's ray.init looks for its node there.
            self.ray_ip = "127.0.0.1"
            self.env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        self.launched = time.strftime("%Y-%m-%d %H:%M:%S")

    # --- saying and recording -------------------------------------------------------------------------
    def say(self, line: str) -> None:
        """To the script's output (gone, once the script was killed) and to the supervisor's log."""
        stamped = f"{time.strftime('%H:%M:%S')} {line}\n"
        try:
            with open(self.logs / "supervisor.log", "a") as f:
                f.write(stamped)
        except OSError:
            pass
        try:
            print(line, flush=True)
        except (OSError, ValueError):
            pass

    def save_state(self, status: str) -> None:
        state = {"status": status, "port": self.port, "replicas": self.replicas, "bind": self.bind,
                 "supervisor": os.getpid(), "supervisor_started": self.started, "sid": self.sid,
                 "marker": self.marker, "script": self.watch, "launched": self.launched,
                 "ray_address": self.ray_address, "children": {c.name: c.pid for c in self.children}}
        tmp = self.run / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run / "state.json")

    # --- the children ------------------------------------------------------------------------------------
    def spawn(self, c: Child) -> None:
        with open(c.log, "a") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(c.argv)}\n")
            out.flush()
            # A process group of its own: a signal for one child reaches nothing else.
            c.popen = subprocess.Popen(c.argv, cwd=ROOT, env=c.env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, process_group=0)
        c.pid, c.started, c.exit_code, c.restart_at, c.serving = c.popen.pid, time.time(), None, 0.0, False

    def reap(self) -> None:
        """Collects every exited child, ours or an orphan handed to us as subreaper."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for c in self.children:
                if c.pid == pid and c.exit_code is None:
                    c.exit_code = os.waitstatus_to_exitcode(status)
                    c.popen.returncode = c.exit_code   # so subprocess never waits for it again

    def check(self) -> None:
        """Raises StopRequested for a signal or a script that has gone."""
        if not self.stop_reason and not alive(self.watch, self.watch_started):
            self.stop_reason = f"serve-class.sh (pid {self.watch}) has gone"
        if self.stop_reason:
            raise StopRequested(self.stop_reason)

    def wait_for(self, what: str, ready: Callable[[], bool], deadline: float, watch: list[Child]) -> None:
        """Waits until `ready()`, failing at the deadline or when one of `watch` exits."""
        while not ready():
            self.reap()
            self.check()
            for c in watch:
                if c.exit_code is not None:
                    tail = [x for x in c.log.read_text(errors="replace").splitlines() if x.strip()][-1:]
                    raise StartFailed(f"{c.name} exited (code {c.exit_code}) while {what}: "
                                      f"{tail[0][:200] if tail else 'no output'}")
            if time.time() > deadline:
                raise StartFailed(f"timed out after {START_DEADLINE_S:.0f} s {what}")
            time.sleep(TICK_S)

    # --- start ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        deadline = time.time() + START_DEADLINE_S
        self.save_state("starting")
        env = dict(self.env)
        if not self.ray_address:
            token = self.run / "ray-token"
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (secrets.token_hex(32) + "\n").encode())
            os.close(fd)
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
            # On SIGTERM `ray start --block` would first drain the node for up to 30 s, waiting for
            # leases that the detached job board never returns; the whole class stops, so no drain.
            head_env = {**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
            self.say(f"== starting a Ray head on {self.ray_ip}:{self.ray_port} (token in {token})")
            ray = Child("ray", [str(BIN / "ray"), "start", "--head", "--block", f"--node-ip-address={self.ray_ip}",
                                f"--port={self.ray_port}", f"--temp-dir={self.run / 'ray'}",
                                "--include-dashboard=false", "--disable-usage-stats",
                                "--object-store-memory=500000000"], self.logs / "ray.log", head_env)
            self.children.append(ray)
            self.spawn(ray)
            self.save_state("starting")
            self.wait_for("starting the Ray head",
                          lambda: "block forever" in ray.log.read_text(errors="replace"), deadline, [ray])
            self.ray_address = f"{self.ray_ip}:{self.ray_port}"
        env["RAY_ADDRESS"] = self.ray_address
        first, last = self.port + 1, self.port + self.replicas
        self.say(f"== starting {self.replicas} dashboard replica{'s' if self.replicas > 1 else ''} "
                 f"on 127.0.0.1:{first}{f'-{last}' if last > first else ''}")
        replicas = []
        for i in range(1, self.replicas + 1):
            p = self.port + i
            c = Child(f"replica {i}", [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                       "--server.address", "127.0.0.1", "--server.port", str(p),
                                       "--server.fileWatcherType", "none", "--server.enableXsrfProtection", "true",
                                       "--server.enableCORS", "true",   # uploads: .streamlit/config.toml's limit
                                       "--browser.gatherUsageStats", "false"],
                      self.logs / f"replica-{i}.log", env, health=f"http://127.0.0.1:{p}/_stcore/health")
            replicas.append(c)
            self.children.append(c)
            self.spawn(c)
        self.save_state("starting")
        for c in replicas:
            self.wait_for(f"waiting for {c.name}'s health check", lambda c=c: http_ok(c.health), deadline,
                          self.children)
            c.serving = True
        cfg = self.run / "haproxy.cfg"
        cfg.write_text(haproxy_config(self.bind, self.port, self.replicas, self.run))
        lb = Child("haproxy", ["haproxy", "-f", str(cfg), "-db"], self.logs / "haproxy.log", env,
                   health=f"http://127.0.0.1:{self.port}/_stcore/health" if self.bind in ("0.0.0.0", "127.0.0.1")
                   else f"http://{self.bind}:{self.port}/_stcore/health")
        self.children.append(lb)
        self.spawn(lb)
        self.save_state("starting")

        def balancer_sees_all_up() -> bool:
            try:
                states = haproxy_states(self.run / "haproxy.sock")
            except (OSError, ValueError, KeyError, IndexError):   # not listening yet, or half an answer
                return False
            return len(states) == self.replicas and all(s == "UP" for s in states.values()) and http_ok(lb.health)

        self.wait_for("waiting for the balancer to see every replica UP", balancer_sees_all_up, deadline,
                      self.children)
        lb.serving = True
        self.save_state("ready")

    # --- supervise -----------------------------------------------------------------------------------------
    def supervise(self) -> int:
        """Restarts what exits until a stop is asked for; the exit code of the class."""
        while True:
            self.reap()
            try:
                self.check()
            except StopRequested:
                return 0
            now = time.time()
            for c in self.children:
                if c.exit_code is not None and not c.restart_at:
                    if c.name == "ray":
                        self.say(f"!! the Ray head exited (code {c.exit_code}): the class stops")
                        self.stop_reason = "the Ray head exited"
                        return 1
                    if now - c.started > STABLE_S:
                        c.backoff = 0
                    wait = BACKOFF_S[min(c.backoff, len(BACKOFF_S) - 1)]
                    c.backoff += 1
                    c.restart_at = now + wait
                    self.say(f"!! {c.name} (pid {c.pid}) exited with code {c.exit_code} after "
                             f"{now - c.started:.0f} s; restarting it in {wait} s")
                elif c.exit_code is not None and now >= c.restart_at:
                    old = c.pid
                    self.spawn(c)
                    c.restarts += 1
                    self.save_state("ready")
                    self.say(f"== {c.name} restarted (pid {old} -> {c.pid}, restart {c.restarts})")
                elif c.exit_code is None and not c.serving and c.health and http_ok(c.health, timeout=0.5):
                    c.serving = True
                    self.say(f"== {c.name} serves again (pid {c.pid})")
            time.sleep(TICK_S)

    # --- stop ------------------------------------------------------------------------------------------------
    def stop(self, failed: bool) -> None:
        """Stops every process of the class: each child by its own signal, then anything left in this
        session. Removes the run folder, keeping the logs when `failed`."""
        try:
            self.save_state("stopping")
        except OSError:
            pass
        self.reap()
        for c in reversed(self.children):   # the balancer first, the Ray head last
            if c.exit_code is None and c.pid:
                try:
                    # The head's `ray start --block` stops its node's processes itself: signal only it.
                    os.kill(c.pid, signal.SIGTERM) if c.name == "ray" else os.killpg(c.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.time() + STOP_GRACE_S
        while time.time() < end and (any(c.exit_code is None and c.pid for c in self.children)
                                     or session_members(self.sid)):
            self.reap()
            time.sleep(0.1)
        left = session_members(self.sid)
        if left:
            self.say(f"!! {len(left)} process{'es' if len(left) > 1 else ''} still running after "
                     f"{STOP_GRACE_S:.0f} s: killed ({', '.join(cmdline(p)[:40] for p in left[:4])})")
            signal_all(left, signal.SIGKILL)
            end = time.time() + 5
            while time.time() < end and session_members(self.sid):
                self.reap()
                time.sleep(0.1)
        self.reap()
        keep = ""
        if failed:
            keep = keep_logs(self.run, self.port)
        shutil.rmtree(self.run, ignore_errors=True)
        if self.stop_reason != "the start failed":   # that one is said by main, in one line
            self.say(f"== stopped{f' ({self.stop_reason})' if self.stop_reason else ''}"
                     + (f"; logs kept in {keep}" if keep else ""))


def keep_logs(run: Path, port: int) -> str:
    """Moves a run folder's logs (and Ray's session logs) to <tmp>/convnetlab-class-PORT-failed."""
    dest = failed_dir(port)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(mode=0o700)
    if (run / "logs").is_dir():
        for f in (run / "logs").iterdir():
            shutil.move(str(f), dest / f.name)
    ray_logs = run / "ray" / "session_latest" / "logs"
    if ray_logs.is_dir():
        shutil.move(str(ray_logs.resolve()), dest / "ray-session")
    return str(dest)


def haproxy_config(bind: str, port: int, replicas: int, run: Path) -> str:
    servers = "".join(f"    server r{i} 127.0.0.1:{port + i} cookie r{i} check\n" for i in range(1, replicas + 1))
    # Cookie stickiness (students behind one NAT share an address); websockets pass through in http
    # mode, kept open by "timeout tunnel"; health from Streamlit's own endpoint, checked every second
    # so a replica that dies leaves within ~2 s and a restarted one is back within ~2 s; a request
    # pinned to a replica that is down goes to another (redispatch), and so does one that a dying
    # replica dropped before answering (retry-on: without it, a 502 now and then).
    # tune.bufsize: a request's line and headers must fit one buffer (less tune.maxrewrite, 1 KiB).
    # At the default 16 KiB a 15,000-character link, with a browser's headers, got HAProxy's 400 page
    # while a replica (uvicorn) took it, and links of 100,000 characters. 64 KiB lets links of up to
    # ~63,000 through; buffers are taken per active transfer, not per idle connection. (A page of our
    # own for longer ones would need HAProxy 3.2: before it, "errorfile 400" is not used for requests
    # that fail to parse, haproxy/haproxy#3032.)
    return f"""global
    maxconn 2000
    tune.bufsize 65536
    stats socket {run / "haproxy.sock"} mode 600 level user
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 2h
    option forwardfor
    option redispatch
    retries 2
    retry-on conn-failure empty-response junk-response
frontend class
    bind {bind}:{port}
    default_backend dashboards
backend dashboards
    balance leastconn
    cookie CONVNETLAB_REPLICA insert indirect nocache httponly
    option httpchk GET /_stcore/health
    default-server inter 1s fall 2 rise 2
{servers}"""


# --- the run folder: one class per port ------------------------------------------------------------

def take_run_dir(port: int) -> tuple[Path, int] | str:
    """The run folder, locked for this supervisor's lifetime (the kernel drops the lock when the
    process ends, kill -9 included); or the one line that says which class holds it."""
    run = run_dir(port)
    for _ in range(5):
        run.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(run / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return running_line(run, port)
        try:
            same = os.fstat(fd).st_ino == os.stat(run / "lock").st_ino
        except FileNotFoundError:
            same = False                        # a class that just stopped removed its folder
        if same:
            return run, fd
        os.close(fd)
        time.sleep(0.2)
    return f"the run folder {run} keeps changing under this start; try again"


def running_line(run: Path, port: int) -> str:
    try:
        st = json.loads((run / "state.json").read_text())
    except (OSError, ValueError):
        return f"a class is already starting on port {port} (its run folder {run} is locked); wait, or stop it"
    how = (f"Ctrl-C in its terminal or `kill {st['script']}`" if alive(st["script"])
           else f"`kill {st['supervisor']}`")
    return (f"a class is already {RUNNING.get(st['status'], st['status'])} on port {port} (since {st['launched']}, supervisor pid "
            f"{st['supervisor']}, serve-class.sh pid {st['script']}): stop it with {how}")


def clear_stale(run: Path, port: int) -> str:
    """Stops the leftovers of a dead class in `run` (its lock is ours now); a line saying what it did."""
    try:
        st = json.loads((run / "state.json").read_text())
    except (OSError, ValueError):
        st = None
    left = leftovers(st["sid"], st["marker"], st["supervisor_started"]) if st else []
    if left:
        signal_all(left, signal.SIGTERM)
        end = time.time() + 10
        while time.time() < end and any(alive(p) for p in left):
            time.sleep(0.2)
        signal_all([p for p in left if alive(p)], signal.SIGKILL)
        end = time.time() + 5
        while time.time() < end and any(alive(p) for p in left):
            time.sleep(0.2)
    keep = keep_logs(run, port) if st else ""
    for p in run.iterdir():
        if p.name != "lock":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    if not st:
        return ""
    return (f"== a class on port {port} (supervisor pid {st['supervisor']}, since {st['launched']}) ended without "
            f"stopping: stopped its {len(left)} leftover process{'es' if len(left) != 1 else ''}; its logs are in {keep}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Runs a hosted class (see scripts/serve-class.sh).")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--replicas", type=int, required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--watch", type=int, required=True, help="the pid whose end stops the class")
    a = ap.parse_args(argv)
    try:
        os.setsid()   # a session of its own: a signal to the script's process group misses it
    except PermissionError:
        if os.getsid(0) != os.getpid():
            print("class_supervisor: cannot start a session of its own (start it in the background)", file=sys.stderr)
            return 2
    # Orphans of the class (a Ray process whose parent died) come to us, to be reaped and stopped.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    got = take_run_dir(a.port)
    if isinstance(got, str):
        print(got, file=sys.stderr)
        return 3
    run, _lock = got
    line = clear_stale(run, a.port)
    if line:
        print(line, flush=True)
    sup = Supervisor(a.port, a.replicas, a.bind, a.watch, run)
    sup.logs.mkdir(mode=0o700)
    try:
        busy = [(addr, p) for addr, p in [(a.bind, a.port)] + [("127.0.0.1", a.port + i) for i in range(1, a.replicas + 1)]
                + ([(sup.ray_ip, sup.ray_port)] if not sup.ray_address else []) if not port_free(addr, p)]
    except OSError as e:
        shutil.rmtree(run, ignore_errors=True)
        print(f"cannot listen on {a.bind}:{a.port}: {e.strerror} (--bind must be an address of this machine)",
              file=sys.stderr)
        return 2
    if busy:
        addr, p = busy[0]
        shutil.rmtree(run, ignore_errors=True)
        print(f"port {p} on {addr} is in use by {port_owner(p)}, not by a class of this script: stop it or "
              f"choose another --port", file=sys.stderr)
        return 3

    def on_signal(signum: int, _frame: object) -> None:
        sup.stop_reason = sup.stop_reason or f"{signal.Signals(signum).name}"

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    sup.say(f"== class on port {a.port}: supervisor pid {os.getpid()}, run folder {run}")
    try:
        sup.start()
    except StartFailed as e:
        sup.stop_reason = "the start failed"
        sup.stop(failed=True)
        print(f"the class did not start: {e}; logs kept in {failed_dir(a.port)}", file=sys.stderr, flush=True)
        return 1
    except StopRequested:
        sup.stop(failed=False)
        return 0
    sup.say(f"== ready: http://{a.bind}:{a.port}/  ({a.replicas} replica{'s' if a.replicas > 1 else ''}, "
            f"jobs on Ray at {sup.ray_address}, "
            f"logs in {sup.logs}, supervisor pid {os.getpid()})")
    code = sup.supervise()
    sup.stop(failed=code != 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
