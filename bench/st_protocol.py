"""A Streamlit session driven over Streamlit's own websocket protocol, without a browser: for load
benchmarks where fifty Chromium pages would measure the benchmark's own rendering on these 2 cores
rather than the server (in a class, every student's browser runs on their own device).

It does what the frontend does on the wire (Streamlit 1.67): it opens `/_stcore/stream` with the
`streamlit` subprotocol, asks for a run with the page's name and query, applies every delta to its
copy of the page, follows the server's query-string changes, keeps each `run_every` fragment's
timer the way the frontend does (one timer per fragment id, replaced when the interval changes,
cleared by `stop_auto_rerun`), and sends widget values and button triggers. What it does not do:
lay out or paint the page, or fetch media files (`st.image` URLs); the benchmark says so.

    s = ProtocolSession("http://127.0.0.1:8501", "lecture", "class=K7P2QX", cookies={"X": "r1"})
    await s.open()
    await s.run_done.wait()
    await s.click(s.find_button("Join the class"), {s.find_widget("text_input"): "Ada"})
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

MAIN, SIDEBAR = 0, 1          # the first index of a delta path: the page's root containers


@dataclass
class Element:
    kind: str                 # the Element oneof: "markdown", "heading", "button", "radio", ...
    proto: Any
    run: str                  # the script run that last wrote it


@dataclass
class ProtocolSession:
    base: str                 # http://host:port
    page: str                 # the page's url path, e.g. "lecture"
    query: str = ""
    cookies: dict[str, str] = field(default_factory=dict)
    elements: dict[tuple[int, ...], Element] = field(default_factory=dict)
    run_done: asyncio.Event = field(default_factory=asyncio.Event)    # the last full run finished
    shown: list[tuple[float, str]] = field(default_factory=list)   # (perf_counter, main heading) per full run
    headings: list[tuple[float, str]] = field(default_factory=list)  # (perf_counter, text) per main h2 received
    fragment_runs: list[float] = field(default_factory=list)       # perf_counter of each fragment run's end
    errors: list[str] = field(default_factory=list)
    log: list[tuple[float, str]] = field(default_factory=list)      # (perf_counter, event): runs, timers, sends

    def __post_init__(self) -> None:
        self._ws = None
        self._page_hash = ""
        self._run_id = ""
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}
        self._values: dict[str, tuple[str, Any]] = {}      # widget id -> (WidgetState field, value)
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Event()

    def _note(self, event: str) -> None:
        self.log.append((time.perf_counter(), event))

    # --- the connection ------------------------------------------------------------------------------
    async def open(self) -> None:
        url = self.base.replace("http", "ws", 1) + "/_stcore/stream"
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self._ws = await websockets.connect(url, subprotocols=["streamlit"], max_size=None,
                                            additional_headers={"Cookie": cookie} if cookie else None)
        self._reader = asyncio.create_task(self._read())
        await self._send_rerun()

    async def close(self) -> None:
        for _, task in self._timers.values():
            task.cancel()
        if self._reader:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def _send_rerun(self, triggers: dict[str, Any] | None = None, fragment: str = "",
                          auto: bool = False) -> None:
        msg = BackMsg()
        rs = msg.rerun_script
        rs.query_string = self.query
        rs.page_script_hash = self._page_hash
        rs.page_name = "" if self._page_hash else self.page
        rs.fragment_id = fragment
        rs.is_auto_rerun = auto
        present = {getattr(e.proto, "id", None) for e in self.elements.values()}
        values = {w: v for w, v in self._values.items() if w in present}     # as the frontend: widgets on the page
        for wid, (kind, value) in {**values, **(triggers or {})}.items():
            w = rs.widget_states.widgets.add()
            w.id = wid
            setattr(w, kind, value)
        self._note(f"sent {'tick ' + fragment[:6] if fragment else 'rerun'}, {len(triggers or {})} trigger(s)")
        if not fragment:
            self.run_done.clear()
        await self._ws.send(msg.SerializeToString())

    async def _tick(self, fragment: str, interval: float) -> None:
        while True:                         # the frontend's setInterval: fires whether or not a run is on
            await asyncio.sleep(interval)
            try:
                await self._send_rerun(fragment=fragment, auto=True)
            except websockets.ConnectionClosed:
                return

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                self._handle(msg)
                self._changed.set()
        except websockets.ConnectionClosed as e:
            self.errors.append(f"closed: {e}")
        except Exception as e:  # noqa: BLE001 - a benchmark counts a broken session, it does not stop
            self.errors.append(f"{type(e).__name__}: {e}")

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "ref_hash":
            self.errors.append("ref_hash without a cache")     # only sent for hashes a client reports
        elif kind == "new_session" and msg.metadata.run.fragment_ids:
            self._note(f"fragment run {[f[:6] for f in msg.metadata.run.fragment_ids]}")
        elif kind == "new_session":                       # a full run starts
            self._note("full run")
            self._run_id = msg.metadata.run.script_run_id
            self.run_done.clear()
        elif kind == "navigation":                     # st.navigation names the page that ran
            self._page_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            el = msg.delta.new_element
            which = el.WhichOneof("type")
            path = tuple(msg.metadata.delta_path)
            self.elements[path] = Element(which, getattr(el, which), self._run_id)
            if which == "heading" and path[0] == MAIN and el.heading.tag == "h2":
                self.headings.append((time.perf_counter(), el.heading.body))
        elif kind == "auto_rerun":
            fid, every = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            self._note(f"auto_rerun {fid[:6]} {every}")
            if fid and self._timers.get(fid, (None,))[0] != every:
                if fid in self._timers:
                    self._timers[fid][1].cancel()
                self._timers[fid] = (every, asyncio.create_task(self._tick(fid, every)))
        elif kind == "stop_auto_rerun":
            self._note(f"stop_auto_rerun {[f[:6] for f in msg.stop_auto_rerun.fragment_ids]}")
            for fid in msg.stop_auto_rerun.fragment_ids:
                if fid in self._timers:
                    self._timers.pop(fid)[1].cancel()
        elif kind == "script_finished":
            status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
            self._note(status)
            if status == "FINISHED_SUCCESSFULLY":        # a full run: what it did not write is gone
                self.elements = {p: e for p, e in self.elements.items() if e.run == self._run_id}
                self.shown.append((time.perf_counter(), self.heading() or ""))
                self.run_done.set()
            elif status == "FINISHED_FRAGMENT_RUN_SUCCESSFULLY":
                self.fragment_runs.append(time.perf_counter())

    # --- reading the page ------------------------------------------------------------------------------
    def texts(self, root: int | None = None) -> list[str]:
        """Every markdown, heading, caption, alert and button label on the page (or one root)."""
        out = []
        for path, e in sorted(self.elements.items()):
            if root is not None and path[0] != root:
                continue
            for attr in ("body", "label"):
                if hasattr(e.proto, attr) and isinstance(getattr(e.proto, attr), str):
                    out.append(getattr(e.proto, attr))
        return out

    def has_text(self, part: str) -> bool:
        return any(part in t for t in self.texts())

    def heading(self, tag: str = "h2", root: int = MAIN) -> str | None:
        for path, e in sorted(self.elements.items()):
            if path[0] == root and e.kind == "heading" and e.proto.tag == tag:
                return e.proto.body
        return None

    def find(self, kind: str, label: str | None = None) -> Any:
        """The proto of the first element of this kind (and label) on the page."""
        for e in (e for _, e in sorted(self.elements.items())):
            if e.kind == kind and (label is None or e.proto.label == label):
                return e.proto
        raise LookupError(f"no {kind} {label or ''} on the page")

    def find_widget(self, kind: str, label: str | None = None) -> str:
        """The id of the first widget of this kind (and label) on the page."""
        return self.find(kind, label).id

    def find_button(self, label: str) -> str:
        return self.find_widget("button", label)

    async def wait_until(self, done, timeout: float) -> bool:
        """Waits until `done()` holds after some message (True), or `timeout` seconds pass (False)."""
        end = time.perf_counter() + timeout
        while not done():
            self._changed.clear()
            left = end - time.perf_counter()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return done()
        return True

    # --- acting on it --------------------------------------------------------------------------------------
    async def send_as_sent_before(self, values: dict[str, tuple[str, Any]]) -> None:
        """Sends a rerun carrying these widget values whether or not the widgets are still on the page:
        what a browser's timer sends when it fires before the browser has drawn the server's new run."""
        await self._send_rerun(values)

    async def set(self, values: dict[str, tuple[str, Any]]) -> float:
        """Changes widget values (id -> (WidgetState field, value)) as a user does, one rerun, and
        returns when it has finished (seconds taken)."""
        self._values.update(values)
        t0 = time.perf_counter()
        await self._send_rerun()
        await self.wait_until(self.run_done.is_set, 120)
        return time.perf_counter() - t0

    async def click(self, button_id: str, values: dict[str, tuple[str, Any]] | None = None) -> float:
        """Sets widget values (id -> (WidgetState field, value)), clicks a button, and returns when the
        run it starts has finished (seconds taken)."""
        self._values.update(values or {})
        t0 = time.perf_counter()
        await self._send_rerun({button_id: ("trigger_value", True)})
        await self.wait_until(self.run_done.is_set, 120)
        return time.perf_counter() - t0
