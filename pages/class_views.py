"""Class mode on the lecture path (layout only; the class itself is core.classroom).

The lecturer starts a class from the sidebar and gets a join code, a join link with its QR code for
the projector and a lecturer link that only they hold; moving through the stops moves the class.
A student opens the join link (or types the code), picks a nickname if they like, and follows:
their page goes where the lecturer went: the server notices the move within a tenth of a second and
redraws the page (pages.class_push; where it cannot, the page polls once a second). "Explore on my
own" (or moving away by hand) detaches, "Back to the lecturer" re-attaches. From any stop the
lecturer asks the room a question, watches the answers come in, reveals the answer with its
arithmetic and downloads every answer as CSV. At a training stop, each student's run joins the
class board, best first, and the lecturer can put one on the projector.

Addresses: `class=<code>` for everyone in the class, `lt=<token>` for the lecturer.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import classroom as cr
from core.links import public_base, read_job_id, server_secret
from core.train.store import results_dir
from core.train.events import ACTIVE_STATES, Epoch
from pages import class_push as push

ss = st.session_state
BOARD_EVERY_S = 2.0      # a student's poll looks at the class board at most this often


@functools.lru_cache(maxsize=8)
def _store(folder: str) -> cr.ClassStore:
    # a plain memo, not st.cache_resource: its per-call hashing was a measurable part of a follower's run
    return cr.ClassStore(Path(folder) / "classes.sqlite")


def store() -> cr.ClassStore:
    """The results directory's class store, one connection per server process and folder."""
    return _store(str(results_dir()))


READS = "class_run_reads"     # ss: this full run's reads of the class (sync() starts them afresh)


def _state(code: str) -> cr.ClassState:
    """The class as this full run of the page first read it. sync() forgets it at the start of every
    run and lead() when the lecturer moves the class: a follower's page reads the store once a run,
    not at every element that shows the class (every follower's page runs on every move). Fragment
    runs (the polls) read the store themselves."""
    reads = ss.setdefault(READS, {})
    if "state" not in reads:
        try:
            reads["state"] = store().state(code)
        except cr.ClassError as e:
            reads["state"] = e
    if isinstance(reads["state"], cr.ClassError):
        raise reads["state"]
    return reads["state"]


def _member(code: str, sid: str) -> bool:
    """Whether this session joined the class, read once a full run as `_state` is."""
    reads = ss.setdefault(READS, {})
    if "member" not in reads:
        reads["member"] = store().member(code, sid)
    return reads["member"]


def _secret() -> bytes:
    return server_secret()


def _base_url() -> str:
    """The address students type or scan: $CONVNETLAB_PUBLIC_URL, else the one this page was opened
    with (core.links.public_base); empty where neither is known (a relative link on this server)."""
    return public_base(os.environ.get("CONVNETLAB_PUBLIC_URL"), st.context.url, st.context.headers.get("Host"),
                       "lecture") or ""


# --- who we are in a class ------------------------------------------------------------------------------

def role() -> tuple[str, str | None]:
    """("lecturer" | "student" | "none", the class code), read once from the address per session."""
    qp = st.query_params
    if "class_code" not in ss:
        code = cr.read_code(qp.get("class"))
        ss["class_code"] = None
        if qp.get("class") and code is None:
            st.warning("The class code in this link is not a class code (six letters and digits).")
        elif code is not None:
            try:
                store().state(code)
                ss["class_code"] = code
                token = qp.get("lt")
                ss["class_lecturer"] = cr.valid_lecturer(code, token, _secret())
                if token and not ss["class_lecturer"]:
                    st.warning("This lecturer link is not valid: you join the class as a student.")
            except cr.ClassError as e:
                st.warning(str(e))
    code = ss.get("class_code")
    if code is None:
        return "none", None
    return ("lecturer" if ss.get("class_lecturer") else "student"), code


def address(code: str | None) -> dict[str, str]:
    """What the class adds to the page's address."""
    if code is None:
        return {}
    out = {"class": code}
    if ss.get("class_lecturer"):
        out["lt"] = cr.lecturer_token(code, _secret())
    return out


def sidebar(stop: str, sid: str) -> None:
    """Start a class, join one, or the class's state, in the sidebar."""
    kind, code = role()
    with st.sidebar:
        st.header("Class")
        if kind == "none":
            st.caption("Lead a class through this path: students follow your stop and answer your questions.")
            st.button("Start a class", key="class_start", on_click=_start, args=(stop,), icon=":material/groups:")
            with st.form("class_join_form", border=False):
                typed = st.text_input("Or join a class with its code", max_chars=12, key="class_join_code",
                                      placeholder="e.g. K7P2QX")
                st.form_submit_button("Join", key="class_join", on_click=_join_by_code)
            if "class_join_error" in ss:
                st.error(ss.pop("class_join_error"))
            return
        try:
            stt = _state(code)
        except cr.ClassError as e:
            st.warning(str(e))
            return
        if not stt.live:
            st.info(f"Class {code} has ended.")
            return
        if kind == "lecturer":
            _lecturer_sidebar(stt)
        else:
            _student_sidebar(stt, sid)


def _start(stop: str) -> None:
    code, _ = store().start(_secret(), stop=stop)
    ss.update(class_code=code, class_lecturer=True)


def _join_by_code() -> None:
    code = cr.read_code(ss.get("class_join_code"))
    if code is None:
        ss["class_join_error"] = "A class code has six letters and digits."
        return
    try:
        store().state(code)
    except cr.ClassError as e:
        ss["class_join_error"] = str(e)
        return
    ss.update(class_code=code, class_lecturer=False)


def _join(code: str, sid: str) -> None:
    try:
        store().join(code, sid, ss.get("class_nick", ""))
        ss["class_following"] = True
    except cr.ClassError as e:
        ss["class_join_error"] = str(e)


def _lecturer_sidebar(stt: cr.ClassState) -> None:
    join = f"{_base_url()}/lecture?class={stt.code}"
    st.markdown(f"**Join code: {stt.code}**")
    st.fragment(_headcount, run_every=2.0)(stt.code)
    with st.popover("Join link and QR code", width="stretch"):
        st.image(cr.qr_svg(join), width=260)
        st.code(join, language=None)
        st.caption("Students open this link (or type the code under Class on /lecture).")
    with st.expander("Your lecturer link (keep it to yourself)"):
        st.code(f"{join}&lt={cr.lecturer_token(stt.code, _secret())}", language=None)
        st.caption("It moves the class and reveals answers: open it on the projector's computer only.")
    st.download_button("Answers (CSV)", store().answers_csv(stt.code, cr.lecturer_token(stt.code, _secret()), _secret()),
                       f"class-{stt.code}-answers.csv", "text/csv", key="class_csv", icon=":material/download:")
    st.button("End the class", key="class_end", on_click=_end, args=(stt.code,))


def _headcount(code: str) -> None:
    try:
        stt = store().state(code)
    except cr.ClassError:
        return
    st.caption(f"{stt.following} following now · {stt.joined} joined")


def _end(code: str) -> None:
    store().end(code, cr.lecturer_token(code, _secret()), _secret())


def _student_sidebar(stt: cr.ClassState, sid: str) -> None:
    if not _member(stt.code, sid):
        st.markdown(f"**Class {stt.code}**")
        with st.form("class_nick_form", border=False):
            st.text_input("Nickname (optional, shown on the class board)", max_chars=cr.MAX_NICKNAME, key="class_nick")
            st.form_submit_button("Join the class", type="primary", key="class_nick_join", on_click=_join,
                                  args=(stt.code, sid))
        if "class_join_error" in ss:
            st.error(ss.pop("class_join_error"))
        return
    following = ss.setdefault("class_following", True)
    st.markdown(f"**Class {stt.code}** · " + ("following the lecturer" if following else "exploring on your own"))
    if following:
        st.button("Explore on my own", key="class_detach", on_click=ss.update, kwargs={"class_following": False})
    else:
        st.button("Back to the lecturer", key="class_attach", type="primary", on_click=_attach, args=(stt,))


def _attach(stt: cr.ClassState) -> None:
    ss["class_following"] = True
    now = store().state(stt.code).stop
    if now:
        ss["lecture_stop"] = ss["class_synced"] = now


# --- keeping the class together ---------------------------------------------------------------------------

def lead(stop: str) -> None:
    """On the lecturer's page: the class goes where the lecturer is."""
    kind, code = role()
    if kind != "lecturer":
        return
    try:
        if _state(code).stop != stop:
            store().move(code, cr.lecturer_token(code, _secret()), _secret(), stop)
            ss.pop(READS, None)                  # the rest of this run shows the class as moved
    except cr.ClassError:
        pass


def sync(sid: str, stops: list[str]) -> None:
    """Before the page draws its stop (call it before the stop widgets): a student who moved away by
    hand is detached; a follower is put on the lecturer's stop."""
    ss.pop("class_board_at", None)               # set again by board() if this run draws a board
    ss["class_page_drawn"] = False               # until drawn() at the end of this run
    ss[READS] = {}                               # this run reads the class afresh, once
    kind, code = role()
    if kind != "student" or not _member(code, sid) or not ss.get("class_following"):
        return
    synced = ss.get("class_synced")
    if synced is not None and ss.get("lecture_stop") != synced:
        ss["class_following"] = False          # the student moved on their own
        return
    try:
        now = _state(code).stop
    except cr.ClassError:
        return
    if now in stops:
        ss["lecture_stop"] = ss["class_synced"] = now


def follow(sid: str) -> None:
    """On a student's page: the server pushes a redraw when the lecturer moved (`sync` then follows),
    asked or revealed a question, ended the class, or a run joined or left the page's class board,
    and reports the student present (pages.class_push, from `drawn`). A fragment polls the class
    for the same: once a second where the server cannot push, else rarely (`push.poll_every`)."""
    kind, code = role()
    live = False
    if kind == "student" and _member(code, sid):
        try:
            live = _state(code).live
        except cr.ClassError:
            pass
    if not live:
        if ss.pop("class_push_code", None):
            push.forget()
        return
    ss["class_push_code"] = code
    ss["class_poll_inline"] = True         # the first call runs inside this full run, which draws it all
    try:
        st.fragment(_poll, run_every=push.poll_every())(code, sid)
    finally:
        ss["class_poll_inline"] = False


def _poll(code: str, sid: str) -> None:
    """Compares the class with what this page last drew to its end (`drawn`), not with what a run
    started to draw, and redraws a page whose last full run did not get to its end (a page that
    counted its stop as shown at the start of a run that was cut short never redrew it). Reports the
    student present where the server's push does not (pages.class_push)."""
    now = time.time()
    following = bool(ss.get("class_following"))
    if not push.available() and now - ss.get("class_seen_at", 0.0) > push.SEEN_EVERY_S:
        store().seen(code, sid, following)
        ss["class_seen_at"] = now
    if ss.get("class_poll_inline"):
        return
    if push.lost_end(ss.get("class_drawn_at"), time.monotonic()):
        st.rerun(scope="app")
    try:
        stt = store().state(code)
    except cr.ClassError:
        return
    if cr.behind(stt, following, ss.get("class_page_drawn", False), ss.get("class_stop_drawn"),
              ss.get("class_question_drawn")):
        st.rerun(scope="app")
    board_at = ss.get("class_board_at")                # (stop, what the page's board showed), see board()
    if board_at and now - ss.get("class_board_checked", 0.0) > BOARD_EVERY_S:
        ss["class_board_checked"] = now
        if _board_signature(code, board_at[0]) != board_at[1]:
            st.rerun(scope="app")             # a run joined or ended: the page redraws the board


# --- questions --------------------------------------------------------------------------------------------

def questions(stop_args: dict[str, Any], sid: str) -> None:
    """The question panel under a stop: the lecturer's composer and tally, or a student's answer box."""
    kind, code = role()
    if kind == "none":
        return
    stt = _state(code)
    if kind == "lecturer":
        _composer(code, stop_args)
        if stt.question:                      # answers come in until the reveal; after it, nothing changes
            st.fragment(_tally, run_every=None if stt.revealed else 1.0)(code, stt.question)
    elif _member(code, sid):
        ss["class_question_drawing"] = (stt.question, stt.revealed)
        if stt.question:
            _answer_box(code, stt.question, sid)


def drawn(stop: str, sid: str) -> None:
    """At the very end of the lecture page: this run drew `stop` and the question state to the end
    (the poll and the push compare the class with these)."""
    ss["class_stop_drawn"] = stop
    ss["class_page_drawn"] = True
    ss["class_drawn_at"] = time.monotonic()
    ss["class_question_drawn"] = ss.pop("class_question_drawing", None)
    if ss.get("class_push_code"):
        board_at = ss.get("class_board_at")
        board_now = functools.partial(_board_signature, jr=_runner()) if board_at else None
        push.mark(ss["class_push_code"], store(), sid, bool(ss.get("class_following")), stop,
                  ss["class_question_drawn"], board_at, board_now)


def _composer(code: str, stop_args: dict[str, Any]) -> None:
    from core import registry
    from core.analysis import summarize
    from core.quiz import is_quizzed, quiz_questions

    with st.expander("Ask the room a question", icon=":material/quiz:"):
        kinds = {"scenario": "Which transfer-learning scenario?", "params": "Which design has more parameters?",
                 "mine": "Multiple choice of my own"}
        arch = stop_args.get("arch") if stop_args.get("arch") in registry.names() else None
        if arch:
            kinds = {"layer": f"A layer of {registry.get(arch).title}", **kinds}
        pick = st.radio("Question", list(kinds), format_func=kinds.get, key="class_q_kind", horizontal=False)
        q: cr.Question | None = None
        try:
            if pick == "layer":
                layers = [r for r in summarize(arch).layers if is_quizzed(r)]
                r = st.selectbox("Layer", layers, format_func=lambda r: f"{r.index}: {r.name} ({r.type})",
                                 key="class_q_layer")
                which = st.radio("About", quiz_questions(r), horizontal=True, key="class_q_which")
                q = cr.layer_question(arch, r.index, which)
            elif pick == "scenario":
                c1, c2 = st.columns(2)
                q = cr.scenario_question(c1.toggle("Similar to ImageNet", key="class_q_sim"),
                                         c2.toggle("A lot of data", key="class_q_lots"))
            elif pick == "params":
                names = registry.names()
                c1, c2 = st.columns(2)
                a = c1.selectbox("First", names, names.index("vgg16"), format_func=lambda n: registry.get(n).label,
                                 key="class_q_a")
                b = c2.selectbox("Second", names, names.index("resnet50"), format_func=lambda n: registry.get(n).label,
                                 key="class_q_b")
                q = cr.more_parameters_question((a, {}), (b, {}))
            else:
                prompt = st.text_input("The question", key="class_q_prompt", max_chars=400)
                choices = [c for c in st.text_area("Choices, one per line", key="class_q_choices").splitlines()
                           if c.strip()]
                right = st.number_input("The right choice (its line number)", 1, 8, 1, key="class_q_right")
                worked = st.text_input("Why (shown at the reveal)", key="class_q_why", max_chars=600)
                q = cr.choice_question(prompt, choices, int(right) - 1, worked) if prompt and choices else None
        except cr.ClassError as e:
            st.warning(str(e))
            q = None
        if q is not None:
            st.markdown(f"**Preview:** {q.prompt}")
        st.button("Ask the room", type="primary", key="class_ask", disabled=q is None, on_click=_ask, args=(code, q))


def _ask(code: str, q: cr.Question) -> None:
    store().ask(code, cr.lecturer_token(code, _secret()), _secret(), q)


def tally_figure(t: cr.Tally) -> go.Figure:
    """The answers so far as bars (no names); the right bar green once revealed."""
    labels = list(t.counts)
    right = {t.question.answer} if t.question.kind == "choice" else {"right"}
    colours = ["#2e7d32" if (t.revealed and lab in right) else "#1f77b4" for lab in labels]
    fig = go.Figure(go.Bar(x=[t.counts[lab] for lab in labels], y=labels, orientation="h", marker_color=colours,
                           text=[t.counts[lab] for lab in labels], textposition="outside", textangle=0,
                           cliponaxis=False))
    fig.update_layout(height=max(180, 60 * len(labels)), margin=dict(l=10, r=10, t=40, b=30),
                      title=f"Answers so far: {t.total}", font=dict(size=16),
                      xaxis=dict(title="students", rangemode="tozero", dtick=max(1, t.total // 5 or 1)),
                      yaxis=dict(autorange="reversed"))
    return fig


def _tally(code: str, number: int) -> None:
    t = store().tally(code, number)
    st.markdown(f"**Question {number}:** {t.question.prompt}")
    st.plotly_chart(tally_figure(t), key="class_tally")
    if t.revealed:
        st.success(f"Answer: **{t.question.answer}**. {t.question.worked}")
    else:
        st.button("Reveal the answer", key="class_reveal", type="primary", on_click=_reveal, args=(code, number))


def _reveal(code: str, number: int) -> None:
    store().reveal(code, cr.lecturer_token(code, _secret()), _secret(), number)


def _answer_box(code: str, number: int, sid: str) -> None:
    q, revealed = store().question(code, number)
    mine = store().my_answer(code, sid, number)
    with st.container(border=True):
        st.markdown(f"**Question from the lecturer:** {q.prompt}")
        if revealed:
            verdict = "" if mine is None else (" You were right." if mine[1] else f" You answered {mine[0]}.")
            st.success(f"Answer: **{q.answer}**. {q.worked}{verdict}")
        elif mine is not None:
            st.info(f"Your answer is in: {mine[0]}. The lecturer reveals the answer soon.")
        else:
            with st.form(f"class_answer_{number}", border=False):
                if q.kind == "choice":
                    st.radio("Your answer", list(q.choices), index=None, key=f"class_a_{number}")
                else:
                    st.text_input("Your answer", key=f"class_a_{number}",
                                         placeholder="e.g. 55x55x96 or 34,944")
                st.form_submit_button("Send", type="primary", key=f"class_send_{number}", on_click=_answer,
                                      args=(code, sid, number))
            if "class_answer_error" in ss:
                st.error(ss.pop("class_answer_error"))


def _answer(code: str, sid: str, number: int) -> None:
    try:
        store().answer(code, sid, number, str(ss.get(f"class_a_{number}") or ""))
    except cr.ClassError as e:
        ss["class_answer_error"] = str(e)


# --- class runs --------------------------------------------------------------------------------------------

LOWER_IS_BETTER = ("mse", "error", "loss")      # metric names where less is better (the board sorts by them)


def settings(config: Any) -> Any:
    """At a training stop in a class, each student picks their own learning rate and epochs for their
    run (the stop's other settings stay); outside a class the stop's settings unchanged."""
    kind, _ = role()
    names = [n for n in ("lr", "epochs") if hasattr(config, n)]
    if kind == "none" or not names:
        return config
    with st.expander("Your run's settings (the class board compares them)", expanded=True):
        cols = st.columns(len(names))
        picked = {}
        if "lr" in names:
            picked["lr"] = float(cols[0].number_input("Learning rate", 1e-5, 1.0, float(config.lr), format="%.1e",
                                                      key="class_run_lr"))
        if "epochs" in names:
            picked["epochs"] = int(cols[-1].number_input("Epochs", 1, max(20, int(config.epochs)), int(config.epochs),
                                                         key="class_run_epochs"))
    return dataclasses.replace(config, **picked)


def describe(config: Any) -> str:
    """A run's settings in a few words for the board."""
    parts = []
    for name, label in (("scenario", "scenario"), ("lr", "lr"), ("epochs", "epochs"), ("bottleneck", "code")):
        v = getattr(config, name, None)
        if v is not None:
            parts.append(f"{label} {v:.0e}" if name == "lr" else f"{label} {v}")
    return ", ".join(parts)


def register_run(stop: str, sid: str, job: str) -> None:
    """A student's (or the lecturer's) live run at a training stop joins the class board."""
    kind, code = role()
    if kind == "lecturer" or (kind == "student" and store().member(code, sid)):
        store().register_run(code, sid, stop, job)


def board(stop: str) -> None:
    """The class's runs at this stop, best validation metric first; the lecturer can put one on the
    projector (read-only, through its share link). The lecturer's board is live (a fragment every
    2 s). A student's page keeps one timer, its poll: a second timed fragment, redrawn while the
    poll reruns the page for a move, sent its update to a place the new stop no longer had ("Bad
    delta path index" in the browser, and the move was lost). The student's board is drawn with
    the page, and the poll redraws the page when a run joins the board or ends."""
    kind, code = role()
    if kind == "none":
        return
    if kind == "lecturer":
        st.fragment(_board, run_every=2.0)(code, stop, True)
        return
    ss["class_board_at"] = (stop, _board_signature(code, stop))
    _board(code, stop, False)


def _board_signature(code: str, stop: str, jr: Any = None) -> tuple:
    """What a student's board must be redrawn for: the runs at the stop and which have ended. `jr`:
    the job runner (the push's watcher, outside any page run, passes it)."""
    return tuple(sorted((job, stt.state in ACTIVE_STATES) for _, job, stt in _board_runs(code, stop, jr or _runner())))


def _board_runs(code: str, stop: str, jr: Any) -> Iterator[tuple[str, str, Any]]:
    """(nickname, job id, job status) of every run on the stop's board."""
    for nick, job in store().runs(code, stop):
        if read_job_id(job) is None:
            continue
        try:
            stt = jr.status(job)
        except Exception:  # noqa: BLE001 - a run pruned from the store: left off the board
            continue
        yield nick, job, stt


def _runner() -> Any:
    from pages.common import runner

    return runner()


def board_rows(code: str, stop: str) -> list[dict[str, Any]]:
    """One row per run at the stop: nickname, settings, state, epoch, the task's first validation
    metric, seconds; best first (lower first for a loss, an error or a mean squared error)."""
    from pages.common import job_events

    rows = []
    for nick, job, stt in _board_runs(code, stop, _runner()):
        epochs = [e for e in job_events(job) if isinstance(e, Epoch)]
        last = epochs[-1] if epochs else None
        metric, value = next(iter(last.metrics.items())) if last and last.metrics else ("", None)
        rows.append({"nickname": nick, "settings": describe(stt.config), "state": stt.state,
                     "epoch": last.epoch if last else 0, "metric": metric, "validation": None if value is None else round(float(value), 3),
                     "seconds": round(last.elapsed, 1) if last else None, "job": job, "status": stt})
    lower = bool(rows) and any(w in rows[0]["metric"] for w in LOWER_IS_BETTER)
    known = sorted((r for r in rows if r["validation"] is not None), key=lambda r: r["validation"], reverse=not lower)
    return known + [r for r in rows if r["validation"] is None]


def _board(code: str, stop: str, lecturer: bool) -> None:
    from pages.common import page_of, share_link_query

    rows = board_rows(code, stop)
    if not rows:
        st.caption("No class runs at this stop yet: each student's live run joins this board.")
        return
    st.markdown(f"**The class's runs** ({len(rows)}, best first)")
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in ("job", "status")} for r in rows])
    st.table(df, hide_index=True)          # static text: reads on a projector, fits a class of 50
    if lecturer:
        by_job = {r["job"]: r for r in rows}
        pick = st.selectbox("Put on the projector", list(by_job), key="class_spotlight_pick",
                            format_func=lambda j: f"{by_job[j]['nickname']} ({by_job[j]['settings']})")
        page = page_of(by_job[pick]["status"])
        sep = "&" if "?" in page else "?"
        st.link_button("Show this run (read-only)", f"{_base_url()}{page}{sep}{share_link_query(pick)}",
                       icon=":material/cast:")
