"""Cached access to core for every page (Streamlit caches are shared by all users: read-only)."""

from __future__ import annotations

import gc
import os
from typing import Callable

import streamlit as st

from core.analysis import Summary, summarize
from core.device import DeviceInfo, describe_device
from core.train.events import Event, LRPoint, Phase, Step
from core.diagram import Diagram, diagram, first_layers
from core.links import (absolute_link, new_session_id, public_base, read_job_id, server_secret, share_token,
                        valid_session_id, valid_share_token)
from core.train.compute import ComputeConfig
from core.train.events import ACTIVE_STATES
from core.train.jobs import JobError, JobSpec, JobStatus, Runner, make_runner
from core.weights import WeightsStatus, weights_status


def require_router() -> None:
    """Runs this page through app.py's router even on a fresh server.

    When a server's very first request is a page URL (a lecturer's link such as
    /explorer?arch=alexnet), Streamlit still treats pages/ as a legacy multipage folder and runs
    the page file on its own: no shared layout, every file listed in the sidebar. app.py's
    st.navigation switches that legacy mode off for good; we do the same and rerun, which keeps
    the URL path and query and so lands on the same page through the router. For that the
    legacy mode must find the page too: each page's url_path in app.py is its file name.

    Why a private flag (Streamlit 1.67): the first `PagesManager` of a process sets the class
    attribute `uses_pages_directory` when a folder named `pages` sits next to the entrypoint, and
    while it is set the script runner runs `_mpa_v1` (the folder's files) instead of app.py. No
    config option turns it off (`client.showSidebarNavigation` only hides the list); only a
    call of st.navigation does, and app.py is not run on that first request. Streamlit's
    maintainers saw the same (streamlit/streamlit PR 10276). The clean way out is a folder with
    another name; while it is called pages/, every page calls this first.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_data(max_entries=64, show_spinner="Analysing the architecture...")
def cached_summary(name: str, size: tuple[int, int, int], options: tuple[tuple[str, object], ...]) -> Summary:
    """summarize(), keyed by plain arguments."""
    return summarize(name, size, dict(options))


@st.cache_data(max_entries=32, show_spinner="Drawing the diagram...")
def cached_diagram(name: str, size: tuple[int, int, int], options: tuple[tuple[str, object], ...],
                   depth: int) -> tuple[Diagram, dict[str, int]]:
    """The architecture's diagram (core.diagram) and, per node, the first layer inside it; keyed by
    plain arguments, so a rerun of the page neither traces nor searches again."""
    from core import archs

    spec = archs.resolve(name)      # a registry name or a timm one
    d = diagram(spec.build_meta(dict(options)), size, depth, spec.num_inputs)
    return d, first_layers(d, [r.module for r in cached_summary(name, size, options).layers])


@st.cache_resource
def device() -> DeviceInfo:
    return describe_device()


@st.cache_data(ttl=60)
def weights() -> list[WeightsStatus]:
    return weights_status()


@st.cache_resource
def _runner() -> Runner:
    return make_runner()


def runner() -> Runner:
    """One job runner per server for every page that trains, chosen by configuration
    (CONVNETLAB_RUNNER): one active job per session across the Studio and the Lab. A runner that
    cannot start (e.g. CONVNETLAB_RUNNER=ray with no cluster at RAY_ADDRESS) stops the page with
    the reason, and is tried again on the next visit."""
    try:
        return _runner()
    except JobError as e:
        st.error(f"Training and measurements are not available on this server: {e}")
        st.stop()



@st.cache_resource
def _secret() -> bytes:
    return server_secret()


def session_id() -> str:
    """This browser session's id, kept in the URL (`sid=`) so that a reload finds its jobs. Only
    ids this server issued are taken from a link; any other (`sid=test`, a guess) gets a fresh id
    and a note, so two students can never share runs by picking the same word."""
    ss, qp = st.session_state, st.query_params
    if "sid" not in ss:
        raw = qp.get("sid")
        if valid_session_id(raw, _secret()):
            ss["sid"] = raw
        else:
            ss["sid"] = new_session_id(_secret())
            if raw:
                ss["sid_refused"] = True
    qp["sid"] = ss["sid"]
    if ss.pop("sid_refused", False):
        st.info("The session id in this link was not issued by this server, so it starts a new session: "
                "runs are found again only through the link of the session that started them.")
    return ss["sid"]


def share_link_query(job_id: str) -> str:
    """The query of a read-only link to one job: whoever opens it sees the run, cannot cancel it."""
    return f"job={job_id}&view={share_token(job_id, _secret())}"


def share_url(page: str, job_id: str, query: str = "") -> str:
    """The whole read-only link to one job, for a copy button: the server's public address, then
    `/<page>?<query>&job=...&view=...`. The address is $CONVNETLAB_PUBLIC_URL when set (a hosted
    class behind a proxy), else the one this browser uses (st.context.url, else the Host header);
    a bare path only where neither is known (a script run without a browser)."""
    base = public_base(os.environ.get("CONVNETLAB_PUBLIC_URL"), st.context.url, st.context.headers.get("Host"),
                       page)
    return absolute_link(base, f"/{page}?{query + '&' if query else ''}{share_link_query(job_id)}")


def may_view(job_id: str | None) -> bool:
    """True when this page was opened with a valid read-only share token for `job_id`."""
    return valid_share_token(job_id, st.query_params.get("view"), _secret())


def page_of(job: JobStatus) -> str:
    """Where a run belongs: '/transfer' for the Studio's runs, '/lab?task=...' for the Lab's."""
    if job.kind == "lab" and job.config is not None:
        from core.lab.common import task_of

        return f"/lab?task={task_of(job.config)}"
    return {"train": "/transfer", "lr_find": "/transfer"}.get(job.kind, "/")


def shown_job(mine: list[JobStatus], own: Callable[[JobStatus], bool],
              chosen: str | None) -> tuple[JobStatus | None, bool]:
    """The run a training page shows, and whether it is shown read-only: the run of a share link
    (`job=` with a valid `view=`), else the session's `chosen` run or its newest run of this page.
    `own` says which runs belong to this page; a link to another page's run (a Lab run opened in
    the Studio) is not shown here, and a note says where it belongs."""
    qp = st.query_params
    linked = read_job_id(qp.get("job"))
    ids = {j.id for j in mine}
    ours = [j for j in mine if own(j)]
    if qp.get("view") is not None and linked not in ids and not may_view(linked):
        st.warning("This share link is not valid: its job= and view= do not belong together (the link may be cut "
                   "off or mistyped). Ask whoever shared it to copy it again.")
    if linked is not None and (linked in ids or may_view(linked)):
        try:
            stt = runner().status(linked)
        except JobError:
            st.warning("The shared run is no longer on this server.")
            stt = None
        if stt is not None and not own(stt):
            st.info(f"The run in this link ({stt.id}) is not a run of this page; it opens on {page_of(stt)} "
                    "(with the same sid= and job=).")
        elif stt is not None and linked not in ids:
            st.info("A shared run, read-only: you can look at it, not cancel it.")
            return stt, True
    wanted = chosen or linked
    shown = next((j for j in ours if j.id == wanted), ours[-1] if ours else None)
    if shown is not None and "view" in qp:
        # the session's own run needs no token: a viewer who has trained now has their own run in the address
        del qp["view"]
        qp["job"] = shown.id
    return shown, False


@st.cache_resource
def _frozen_at_start() -> int:
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def keep_reruns_cheap() -> None:
    """Once per server, moves the objects alive after the imports (torch, plotly, the registry: ~400,000,
    all kept until the server stops) out of the garbage collector's sight (`gc.freeze`).

    Why: Streamlit runs a full collection after every script run (runner.postScriptGC), and each
    walked all of them, about 0.2 s of CPU here. A watched run's fragment ticks once a second, so
    watching cost a fifth of a core per open tab for the collection alone (bench/bench_watch.py).
    Objects made later (sessions, figures) are still collected after each run."""
    import pandas  # noqa: F401  (the pages' heavy imports, made before the freeze so that they are frozen too)
    import plotly.express  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    _frozen_at_start()


def job_events(job_id: str) -> list[Event]:
    """A job's events, fetching only the new ones from the runner."""
    got = st.session_state.setdefault("job_events", {}).setdefault(job_id, [])
    got.extend(runner().events(job_id, since=len(got)))
    return got


def progress_line(events: list[Event]) -> None:
    """The newest phase or step of a running job, as a progress bar."""
    last = next((e for e in reversed(events) if isinstance(e, (Phase, Step, LRPoint))), None)
    if isinstance(last, Step):
        speed = (f" · {last.images_per_s:,.0f} training images/s" if last.images_per_s
                 else " · head on cached features")
        who = f"{last.series}: " if last.series else ""
        st.progress(min(1.0, last.step / max(1, last.total_steps)),
                    f"{who}step {last.step} of {last.total_steps}{speed} · about {last.eta:.0f} s left")
    elif isinstance(last, LRPoint):
        st.progress(min(1.0, last.step / last.total_steps), f"LR finder: step {last.step} of at most {last.total_steps}")
    elif isinstance(last, Phase) and last.total:
        st.progress(min(1.0, last.done / last.total), f"{last.phase}: {last.done} of {last.total}")
    elif isinstance(last, Phase):
        st.progress(0.0, f"{last.phase}...")
    else:
        st.progress(0.0, "starting the worker...")


def run_rules() -> None:
    """The server's rules for runs, said before Train: the time cap and the queue's share."""
    from core.train.jobs import time_cap_s

    cap = time_cap_s()
    st.caption((f"A run stops after {cap / 60:g} minutes on this server. " if cap else "")
               + "Each session has one run at a time, and in the queue a session that has just run waits "
                 "behind those that have not.")


def job_outcome(state: str, message: str) -> None:
    """How a finished job ended, in one coloured line."""
    if state == "done":
        st.success(f"Done: {message}.")
    elif state == "diverged":
        st.error(f"Diverged: {message}")
    elif state == "failed":
        st.error(f"The run failed: {message}")
    elif state == "cancelled":
        st.warning("Cancelled.")
    elif state == "interrupted":
        st.warning(f"Interrupted: {message}. Start it again when you are ready.")


# --- heavy computations as jobs (core.train.compute) --------------------------------------------------

def start_compute(key: str, config: ComputeConfig) -> None:
    """A button's on_click: submits `config` as a job of this session's computation lane (beside its
    training run: one of each at a time); `follow_compute(key)` shows it and collects the result."""
    ss = st.session_state
    ss.pop(key, None)
    try:
        ss[f"{key}_job"] = _runner().submit(f"{ss['sid']}/compute", JobSpec("compute", config))
    except JobError as e:
        ss[f"{key}_ended"] = ("refused", str(e))


def computing(key: str) -> bool:
    """True while this session's computation for `key` is queued or running (its start button waits)."""
    return bool(st.session_state.get(f"{key}_job"))


def ticking(active: bool) -> float | None:
    """A live fragment's run_every: once a second while its job is queued or running, never after
    (a tab left open on a finished run would otherwise keep the server busy every second)."""
    return 1.0 if active else None


def follow_compute(key: str) -> None:
    """The job `start_compute(key, ...)` started: its queue place or progress with a Cancel button;
    when it ends, its result goes to session_state[key] and the page reruns once to show it."""
    ss = st.session_state
    if f"{key}_ended" in ss:
        state, message = ss.pop(f"{key}_ended")
        if state == "refused":
            st.error(message)
        else:
            job_outcome(state, message)
    if ss.get(f"{key}_job"):
        st.fragment(_follow, run_every=ticking(True))(key)


def _follow(key: str) -> None:
    ss = st.session_state
    jid = ss[f"{key}_job"]
    jr = runner()
    stt = jr.status(jid)
    if stt.state in ACTIVE_STATES:
        if stt.state == "queued":
            st.info(f"Queued: position {stt.position}. This server runs {jr.limits().max_concurrent} heavy job(s) "
                    "at a time (training runs included), so that each gets the machine to itself.")
        else:
            progress_line(job_events(jid))
        st.button("Cancel", key=f"{key}_cancel", on_click=jr.cancel, args=(jid,))
        return
    del ss[f"{key}_job"]
    if stt.state == "done":
        ss[key] = jr.results(jid)
    else:
        ss[f"{key}_ended"] = (stt.state, stt.message)
    st.rerun(scope="app")
