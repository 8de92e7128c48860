"""The lecture path: the lecture's sections in the slides' order, one stop per point, each with its
live component in place, a link to the full page with the exact state, and presenter notes.

Navigation for a room: Previous / Next, the stop list in the sidebar, the arrow keys and PageUp /
PageDown (what clickers send), and the stop in the address (`/lecture?stop=inception-module`).
Stops render from the prepared state on disk (`python -m core lecture prepare`, or the sidebar's
button); training stops show a finished run at once and can train it again live, through the same
job runner as the Studio and the Lab. Layout only: the stops are `core.lecture.stops`, their
panels `core.lecture.panels`.
"""

from __future__ import annotations

import time

import streamlit as st

from core.formatting import plural
from core.lecture import prepare as prep
from core.lecture.handout import DEFAULT_BASE_URL
from core.lecture.panels import (Block, Callout, Chart, FinishedRun, Graph, Images, Metrics, Panel, Row, Table, Text,
                                 live_blocks, training_panel)
from core.lecture.stops import STOPS, Stop, full_link, get, run_plans, slugs
from core.links import read_choice, read_flag
from core.train.compute import ComputeConfig
from core.train.events import ACTIVE_STATES
from core.train.jobs import JobError, JobSpec
from pages import class_views as cv
from pages import lecture_panels as lp
from pages.common import (computing, follow_compute, job_events, job_outcome, progress_line, require_router, runner,
                          session_id, start_compute, ticking)

require_router()
ss, qp = st.session_state, st.query_params
sid = session_id()
N = len(STOPS)

# --- where we are: the address first, then the buttons, the list and the keys ---------------------------
if "lecture_stop" not in ss:
    slug, problem = read_choice(qp.get("stop"), "stop", slugs())
    if problem:
        st.warning(f"The link asks for a stop this path does not have ({problem}); showing the first stop.")
    ss["lecture_stop"] = slug or STOPS[0].slug
    ss["lecture_big"] = read_flag(qp.get("big"))


def _go(delta: int) -> None:
    ss["lecture_stop"] = STOPS[min(max(slugs().index(ss["lecture_stop"]) + delta, 0), N - 1)].slug


def _picked(key: str) -> None:
    if key == f"lecture_stop_pick_{ss['lecture_stop']}":     # the list on the page now, not an earlier one
        ss["lecture_stop"] = ss[key]


# In a class (pages.class_views): a student's page goes to the lecturer's stop, the lecturer's takes
# the class along; the class's box heads the sidebar.
cv.sync(sid, slugs())
_, code = cv.role()
cv.lead(ss["lecture_stop"])
cv.follow(sid)
cv.sidebar(ss["lecture_stop"], sid)

with st.sidebar:
    st.header("Lecture path")
    st.toggle("Larger type", key="lecture_big", help="Bigger text for a large room (also `big=1` in the link).")
    # The list is a new widget for each stop it shows (its key names the stop): a value that a browser
    # sent before it saw the page's new stop (a class follower's timer can, while the server pushes
    # the lecturer's move) belongs to the old widget and is never taken as a choice that detaches it.
    pick = f"lecture_stop_pick_{ss['lecture_stop']}"
    st.radio("Stop", slugs(), index=slugs().index(ss["lecture_stop"]), key=pick, label_visibility="collapsed",
             format_func=lambda s: f"{slugs().index(s) + 1}. {get(s).title}", on_change=_picked, args=(pick,))

stop = get(ss["lecture_stop"])
k = slugs().index(stop.slug)
params = {"stop": stop.slug, "sid": sid, **({"big": "1"} if ss["lecture_big"] else {}), **cv.address(code)}
if dict(qp) != params:
    qp.from_dict(params)

if ss["lecture_big"]:
    st.html("<style>[data-testid='stMainBlockContainer'] p, [data-testid='stMainBlockContainer'] li "
            "{font-size: 1.3rem !important; line-height: 1.45}"
            "[data-testid='stMainBlockContainer'] h2 {font-size: 2.6rem}</style>")

# Clickers send PageUp / PageDown, keyboards the arrows: one listener on the page (installed once,
# in the page's own window, so it outlives this element) clicks the Previous / Next buttons. Keys
# typed into a field, a slider, a radio list or a tab bar are left to them.
st.html("""<script>
if (!window.__lectureKeys) {
  window.__lectureKeys = true;
  document.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const t = e.target;
    if (t && (t.closest('input, textarea, select, [contenteditable="true"], [role="slider"], [role="radio"], '
                        + '[role="tab"], [role="option"], [role="listbox"]'))) return;
    const which = {ArrowRight: 'next', PageDown: 'next', ArrowLeft: 'prev', PageUp: 'prev'}[e.key];
    if (!which || !location.pathname.endsWith('/lecture')) return;
    // a rerun can leave the old button beside the new one for a moment: the current one first
    const button = document.querySelector('.st-key-lecture_' + which + '[data-stale="false"] button')
                   || document.querySelector('.st-key-lecture_' + which + ' button');
    if (button && !button.disabled) { e.preventDefault(); button.click(); }
  });
}
</script>""", unsafe_allow_javascript=True)

# --- the stop ----------------------------------------------------------------------------------------------
st.caption(f"{stop.section} · stop {k + 1} of {N}")
st.header(stop.title, anchor=False)
st.markdown(stop.point)
b1, b2, b3 = st.columns([1, 1, 1], vertical_alignment="center")
b1.button("◀ Previous", key="lecture_prev", on_click=_go, args=(-1,), disabled=k == 0, width="stretch",
          help="Also ← and PageUp")
b2.button("Next ▶", key="lecture_next", on_click=_go, args=(1,), disabled=k == N - 1, width="stretch",
          help="Also → and PageDown")
plans = run_plans() if stop.training else {}         # settings of the stop's runs (not needed elsewhere)
b3.link_button("Full page", full_link(stop, plans), width="stretch", icon=":material/open_in_new:",
               help="Open this stop's page with the same state, every option at hand")


def show(blocks: Panel | list[Block], key: str) -> None:
    """Lays a panel's blocks out (core.lecture.panels); `key` makes chart keys unique per stop."""
    for i, b in enumerate(blocks):
        if isinstance(b, Text):
            st.markdown(b.md)
        elif isinstance(b, Metrics):
            # two by two: four metrics side by side cut exact counts at 1024x768
            for pair in range(0, len(b.items), 2):
                cols = st.columns(2)
                for col, (label, value, help_) in zip(cols, b.items[pair:pair + 2]):
                    col.metric(label, value, help=help_ or None)
        elif isinstance(b, Table) and b.matrix:
            st.table(b.frame, hide_index=True, hide_header=True, width="content")
            if b.caption:
                st.caption(b.caption)
        elif isinstance(b, Table):
            st.dataframe(b.frame, hide_index=True, width="stretch")
            if b.caption:
                st.caption(b.caption)
        elif isinstance(b, Chart):
            st.plotly_chart(b.figure, width="stretch", key=f"{key}_{i}")
            if b.caption:
                st.caption(b.caption)
        elif isinstance(b, Images):
            st.image(list(b.images), width=b.width, caption=list(b.captions))
            if b.caption:
                st.caption(b.caption)
        elif isinstance(b, Callout):
            {"info": st.info, "warning": st.warning, "success": st.success}[b.kind](b.text)
        elif isinstance(b, Graph):
            st.html("<style>[data-testid='stGraphVizChart']{overflow-x:auto}"
                    "[data-testid='stGraphVizChart'] svg{max-width:none!important;height:auto}</style>")
            st.graphviz_chart(b.dot, width="content")
            if b.caption:
                st.caption(b.caption)
        elif isinstance(b, Row):
            for j, (col, part) in enumerate(zip(st.columns(len(b.columns)), b.columns)):
                with col:
                    show(part, f"{key}_{i}_{j}")


# --- training stops: the finished run, and the same run trained live ----------------------------------------
live = ss.setdefault("lecture_live", {})     # slug -> {"jobs": {plan: job id}}


def _train_live(s: Stop, config: object) -> None:
    try:
        first = s.runs[0]
        jid = runner().submit(sid, JobSpec(plans[first].kind, config))
        live[s.slug] = {"jobs": {first: jid}, "panel": None}
        cv.register_run(s.slug, sid, jid)
    except JobError as e:
        ss["lecture_error"] = str(e)


def _follow_live(s: Stop) -> None:
    """The stop's live runs, one after another (one active run per session): progress and curves;
    when the last one ends, its panel replaces the prepared one and the page reruns once."""
    state = live[s.slug]
    jr = runner()
    name, jid = list(state["jobs"].items())[-1]
    stt = jr.status(jid)
    ev = job_events(jid)
    if stt.state == "queued":
        st.info(f"Queued: position {stt.position}. This machine runs {jr.limits().max_concurrent} at a time.")
    elif stt.state == "running":
        st.caption(f"Training live: {plans[name].title}")
        progress_line(ev)
        show(live_blocks(s.component.kwargs["view"], ev), f"live_{s.slug}")
    if stt.state in ACTIVE_STATES:
        st.button("Cancel", key="lecture_cancel", on_click=jr.cancel, args=(jid,))
        return
    nxt = s.runs.index(name) + 1
    if stt.state == "done" and nxt < len(s.runs):
        try:
            state["jobs"][s.runs[nxt]] = jr.submit(sid, JobSpec(plans[s.runs[nxt]].kind, plans[s.runs[nxt]].config))
        except JobError as e:
            ss["lecture_error"] = str(e)
        return
    runs = {}
    for plan, job in state["jobs"].items():
        j = jr.status(job)
        res = jr.results(job) if j.state == "done" else None
        runs[plan] = FinishedRun(plan, j.kind, j.config, j.state, j.message, tuple(job_events(job)),
                                 getattr(res, "folder", None), results=res)
    state["panel"] = training_panel(s.component.kwargs["view"], runs)
    state["ended"] = (stt.state, stt.message)
    st.rerun(scope="app")


panel: Panel | None = None
if stop.training:
    mine = live.get(stop.slug)
    if mine and mine.get("panel") is not None:
        panel = mine["panel"]
        job_outcome(*mine["ended"])
        st.caption("Trained live in this session.")
        st.button("Show the prepared run again", key="lecture_back", on_click=live.pop, args=(stop.slug,))
    else:
        panel = lp.prepared_panel(stop)
        if panel is None and prep.load_runs(stop):
            panel = lp.computed_panel(stop.slug, prep.signature(stop))
        if stop.live:
            busy = any(j.state in ACTIVE_STATES for j in runner().jobs_of(sid))
            if mine is None:
                first_config = cv.settings(plans[stop.runs[0]].config)      # a class's students pick their own
                st.button("Train it live", key="lecture_train", type="primary", on_click=_train_live,
                          args=(stop, first_config),
                          disabled=busy, help="The same run again, through the job runner: the class watches it "
                                              "train (one run per session at a time).")
            if "lecture_error" in ss:
                st.error(ss.pop("lecture_error"))
            if mine is not None:
                st.fragment(_follow_live, run_every=ticking(True))(stop)
        if panel is None:
            st.info("No finished run yet: prepare the lecture before class (sidebar, or `python -m core lecture "
                    "prepare`), or train it live now.")
else:
    panel = lp.prepared_panel(stop) or lp.computed_panel(stop.slug, prep.signature(stop))
if panel is not None:
    show(panel, f"stop_{stop.slug}")
if stop.training and stop.live:
    cv.board(stop.slug)
cv.questions(stop.component.kwargs, sid)
for label, link in stop.related:
    st.link_button(label, link)
if cv.role()[0] != "student":          # the notes hold the numbers to expect: not for a class's students
    with st.expander("Presenter notes"):
        st.markdown(stop.notes)

# --- ready before class ----------------------------------------------------------------------------------------


def _status() -> None:
    bg = lp.preparation()
    if bg.running:
        st.progress(bg.fraction, bg.message)
        return
    if bg.error:
        st.error(f"Preparing failed: {bg.error}")
    done = prep.state()
    ready = sum(prep.panel_file(s.slug).is_file() for s in STOPS)
    if done:
        when = time.strftime("%d %b %H:%M", time.localtime(done["when"]))
        st.caption(f"Prepared {when} ({done['profile']} run settings): {ready} of {N} stops on disk.")
    else:
        st.caption("Not prepared yet: every stop is computed when first shown, and training stops have no "
                   "finished run.")
    missing = prep.missing_weights()
    if missing:
        st.caption("Not on this machine: ImageNet weights for "
                   + "; ".join(f"{m.arch} ({plural(len(m.stops), 'stop')} {'uses' if len(m.stops) == 1 else 'use'} "
                               f"{m.fallback} weights instead)" for m in missing)
                   + f". Ahead of class, with a network: `{prep.prefetch_command(missing)}`.")


# A class's students get neither: preparing is the server's work for the lecturer, and every
# element a follower's page draws is drawn again on every move, for every student.
if cv.role()[0] != "student":
    with st.sidebar:
        st.subheader("Ready before class")
        bg = lp.preparation()
        st.button("Prepare every stop", key="lecture_prepare", disabled=bg.running,
                  on_click=lambda: lp.preparation().start(runner()),
                  help="Summaries, diagrams, charts and the finished runs of every training stop (several minutes "
                       "on a CPU), kept on disk for the next server too.")
        st.fragment(_status, run_every=ticking(bg.running))()
        st.subheader("Handout")
        base = st.text_input("Dashboard address in the handout's links", DEFAULT_BASE_URL, key="lecture_base")
        st.button("Build the handout", key="lecture_handout", disabled=computing("lecture_zip"), on_click=start_compute,
                  args=("lecture_zip", ComputeConfig.of("handout", "the lecture handout", base_url=base)))
        follow_compute("lecture_zip")
        if ss.get("lecture_zip"):
            st.download_button("Download (zip)", ss["lecture_zip"], "convnetlab-handout.zip", "application/zip",
                               key="lecture_zip_dl", icon=":material/download:")

cv.drawn(stop.slug, sid)     # last: a class follower's poll and push count this stop as shown only once a run got here
