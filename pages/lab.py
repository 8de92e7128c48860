"""Training Lab: the lecture's last third trained live (autoencoder, U-Net vs autoencoder, Siamese
one-shot learning, plain vs residual), through the same job runner as the Transfer Learning Studio.

Each task's controls, live view and results live in `pages/lab_views/<task>.py`; this page holds
what they share: the task choice (in the URL as `?task=`), the options in the URL, the buttons,
the queue, the progress and the reload."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import streamlit as st

from core.lab.common import TASKS, TITLES, link_values, options, task_module, task_of
from core.train.events import ACTIVE_STATES, Event, Note, RunInfo
from core.train.jobs import JobError, JobSpec
from pages.common import (device, job_events, job_outcome, progress_line, require_router, run_rules, runner,
                          session_id, share_url, shown_job, ticking)

require_router()
ss, qp = st.session_state, st.query_params


def _available() -> dict[str, Any]:
    """The tasks whose core module and page view exist, in the lecture's order."""
    out = {}
    for task in TASKS:
        try:
            task_module(task)
            out[task] = importlib.import_module(f"pages.lab_views.{task}")
        except ModuleNotFoundError:
            continue
    return out


VIEWS = _available()
sid = session_id()
jr = runner()

if "lab_task" not in ss:
    ss["lab_task"] = qp.get("task") if qp.get("task") in VIEWS else list(VIEWS)[0]
st.title("Training Lab")
# A select box: a row of buttons for every task wraps onto two lines at a projector's 1024 px
task = st.selectbox("Task", list(VIEWS), format_func=TITLES.get, key="lab_task") or list(VIEWS)[0]
qp["task"] = task
view, module = VIEWS[task], task_module(task)
st.markdown(view.INTRO + f" Training runs in a separate process on the {device().label}.")


def url_defaults() -> dict[str, Any]:
    """A deep link's option values (`?task=unet&epochs=3`), the Config's defaults for the rest; what
    the Config refuses is ignored with a note and taken out of the address."""
    link = link_values(module.Config, {f.name: qp.get(f.name) for f in options(module.Config)
                                       if qp.get(f.name) is not None})
    for name, why in link.ignored.items():
        st.warning(f"Ignored from the link: {why}.")
        del qp[name]
    return link.values


defaults = url_defaults()
with st.sidebar:
    st.header(TITLES[task])
    values = view.controls(defaults)
cfg, problem = None, None
try:
    cfg = module.Config(**{**defaults, **values})
except (TypeError, ValueError) as e:
    problem = str(e)
    st.error(f"These settings cannot train: {problem}")
for k, v in values.items():
    if v != module.Config.__dataclass_fields__[k].default:
        qp[k] = str(v)
    elif k in qp:
        del qp[k]

mine = jr.jobs_of(sid)
active = next((j for j in mine if j.state in ACTIVE_STATES), None)
# The job to show: a run shared read-only with this link (job= and view=), else this task's newest
# in this session (a reload finds it through sid= and job=).
job, viewer = shown_job(mine, lambda j: j.kind == "lab" and j.config is not None and task_of(j.config) == task,
                        ss.get("lab_jobs", {}).get(task))


def _submit() -> None:
    try:
        ss.setdefault("lab_jobs", {})[task] = jr.submit(sid, JobSpec("lab", cfg))
        qp["job"] = ss["lab_jobs"][task]
    except JobError as e:
        ss["lab_error"] = str(e)


# The buttons before the task's explanations, where a lecturer sees them first. The share link is
# drawn here, not in the live fragment: redrawn every second, an open popover showed an empty box.
with st.container(horizontal=True, vertical_alignment="center"):
    st.button("Train", type="primary", disabled=cfg is None or active is not None, on_click=_submit, key="lab_go")
    if job is not None and not viewer:
        with st.popover("Share this run", icon=":material/share:"):
            st.code(share_url("lab", job.id, f"task={task}"), language=None, wrap_lines=True)
            st.caption("Whoever opens this link sees this run, live while it trains and its results after; they "
                       "cannot cancel it.")
    if active is not None:   # after the popover: when the run ends, an open popover keeps its place and stays open
        st.button("Cancel", on_click=jr.cancel, args=(active.id,), key="lab_cancel")
if active is not None and (active.kind != "lab" or task_of(active.config) != task):
    st.info("Your other run must finish (or be cancelled) before this one can start: one run at a time.")
run_rules()
if "lab_error" in ss:
    st.error(ss.pop("lab_error"))

view.explain(cfg)


def parameters_line(ev: list[Event], active: bool) -> str | None:
    """Each network's trainable parameters and the split, from the run's RunInfo events: a run of
    several networks (plain and residual at two depths) counts each as it starts."""
    infos = [e for e in ev if isinstance(e, RunInfo)]
    if not infos:
        return None
    if len({(i.n_train, i.n_val) for i in infos}) > 1:
        split = "; ".join(f"{i.series}: {i.n_train:,} training / {i.n_val:,} validation" for i in infos)
    else:
        split = f"{infos[0].n_train:,} training / {infos[0].n_val:,} validation"
    if len(infos) == 1 and not infos[0].series:
        return f"{infos[0].trainable:,} trainable parameters; {split} examples."
    each = ", ".join(f"{i.series} {i.trainable:,}" for i in infos)
    return (f"Trainable parameters per network: {each}; {split} examples."
            + (" Each network is counted when it starts." if active else ""))


def live() -> None:
    if job is None:
        return
    stt = jr.status(job.id)
    ev = job_events(job.id)
    if stt.state == "queued":
        st.info(f"Queued: position {stt.position}. This machine runs {jr.limits().max_concurrent} at a time.")
    elif stt.state == "running":
        progress_line(ev)
    if stt.config != cfg:
        shown = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(stt.config).items())
        st.caption(f"Showing run {stt.id} ({shown}); the controls have changed since.")
    for n in (e for e in ev if isinstance(e, Note)):
        st.info(n.message)
    line = parameters_line(ev, stt.state in ACTIVE_STATES)
    if line:
        st.caption(line)
    view.live(ev, stt.config)
    job_outcome(stt.state, stt.message)
    if stt.state not in ACTIVE_STATES and ss.get("lab_shown") != job.id:
        ss["lab_shown"] = job.id
        st.rerun()  # once, so the results below render


st.fragment(live, run_every=ticking(job is not None and jr.status(job.id).state in ACTIVE_STATES))()
if not viewer and hasattr(view, "compare"):
    # this session's finished runs of the task, side by side (the autoencoder's widths)
    finished = [j for j in mine if j.kind == "lab" and j.config is not None and task_of(j.config) == task
                and j.state == "done"]
    if len(finished) >= 2:
        view.compare([r for r in (jr.results(j.id) for j in finished) if r is not None])
res = jr.results(job.id) if job is not None else None
if res is not None:
    view.results(res)
