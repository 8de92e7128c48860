"""A class: the lecturer leads the lecture path, students follow, answer questions, compare runs.

Everything a class is lives in one SQLite file in the results directory (`classes.sqlite` beside the
job store), so every web replica of a hosted class reads and writes the same class: a student whose
replica dies reconnects to another and finds the class, their answers and the lecturer's stop as
they were. Nothing lives in one process's memory.

- A class has a short join code (6 letters and digits without look-alikes) and lives until the
  lecturer ends it or `CLASS_HOURS` pass. The lecturer's proof is an HMAC of the code under the
  server secret (`core.links`): whoever holds the lecturer link may move the class, ask, reveal and
  end; a student's link has the code only, and an altered token proves nothing.
- A student is a browser session (the server-signed session id), with an optional nickname (at most
  `MAX_NICKNAME` characters, control characters removed; pages show it as plain text).
- The lecturer's stop: students who follow show it as soon as their server sees the move
  (pages/class_push.py reads the class ten times a second) or, where the server cannot push,
  their page's own poll does. The server (or the poll) reports followers present (`seen`,
  `seen_many`); the lecturer sees how many followed in the last seconds.
- Questions: one open at a time; one answer per student per question, refused after the reveal;
  the tally never carries nicknames; the lecturer downloads every answer as CSV.
- Class runs: a student's run (a job id of the runner) registered with the class, one per student
  and stop; the board reads the runs' state from the runner.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
import sqlite3
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

CLASS_HOURS = 12             # a class ends by itself this long after it started
MAX_NICKNAME = 24            # characters
FOLLOWING_S = 10.0           # a follower counts while it reported within this many seconds
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"    # no 0/O, 1/I/L
CODE_LENGTH = 6


class ClassError(ValueError):
    """A request the class refuses, with a sentence for the user."""


# --- questions ---------------------------------------------------------------------------------------

QuestionKind = Literal["choice", "layer"]


@dataclass(frozen=True)
class Question:
    """One question to the room.

    Attributes:
        kind: "choice" (pick one of `choices`) or "layer" (a layer's output size or parameter count,
            graded by `core.quiz.check_answer`, rounded answers included).
        prompt: what the room reads.
        answer: the right choice, or the layer's exact answer (shown at the reveal).
        worked: the arithmetic behind the answer, shown at the reveal.
        choices: the options of a choice question.
        layer: for a layer question, {"arch", "size", "options", "index", "question"}.
    """

    kind: QuestionKind
    prompt: str
    answer: str
    worked: str
    choices: tuple[str, ...] = ()
    layer: dict[str, Any] = field(default_factory=dict)

    def grade(self, text: str) -> bool:
        """Whether an answer is right."""
        if self.kind == "choice":
            return text == self.answer
        from core.quiz import check_answer

        return check_answer(_layer_record(self.layer), self.layer["question"], text).correct


def _layer_record(ref: dict[str, Any]) -> Any:
    from core.analysis import summarize

    s = summarize(ref["arch"], tuple(ref["size"]), dict(ref["options"]))
    return s.layers[int(ref["index"])]


def layer_question(arch: str, index: int, question: str = "output size", size: tuple[int, int, int] | None = None,
                   options: dict[str, Any] | None = None) -> Question:
    """The quiz's question about one layer ("output size" or "parameters"), with the layer card's
    arithmetic as the worked answer."""
    from core.analysis import summarize
    from core.explain import layer_card
    from core.quiz import expected, givens, quiz_questions

    s = summarize(arch, size, options)
    if not 0 <= index < len(s.layers):
        raise ClassError(f"{arch} has layers 0 to {len(s.layers) - 1}, not {index}")
    r = s.layers[index]
    if question not in quiz_questions(r):
        raise ClassError(f"{r.name} has no question about {question}")
    title, steps = layer_card(s, index)
    answer = expected(r, question)
    prompt = f"{s.title}, {r.name} ({r.type}). {givens(r)} What is its {question}?"
    worked = f"{title}: " + "; ".join(f"{st.label}: {st.text}" for st in steps)
    return Question("layer", prompt, answer, worked, layer={"arch": arch, "size": list(s.input_size),
                                                            "options": s.options, "index": index,
                                                            "question": question})


def scenario_question(similar: bool, lots_of_data: bool) -> Question:
    """The lecture's 2x2 table as a question: which transfer-learning scenario fits this dataset."""
    from core.train.advice import SCENARIOS, advise

    key, words = advise(similar, lots_of_data)
    data = "a lot of labelled data" if lots_of_data else "very little labelled data"
    kind = "very similar to ImageNet" if similar else "very different from ImageNet"
    choices = tuple(SCENARIOS.values())
    return Question("choice", f"Your dataset is {kind}, and you have {data}. Which scenario?", SCENARIOS[key],
                    f"The lecture's table: {words}", choices=choices)


def more_parameters_question(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]) -> Question:
    """Which of two designs has more parameters (registry entries with options), counted by the engine."""
    from core import registry
    from core.analysis import summarize
    from core.formatting import fmt_int

    names, counts = [], []
    for arch, opts in (a, b):
        s = summarize(arch, options=opts)
        shown = ", ".join(f"{k}={v}" for k, v in opts.items())
        names.append(f"{registry.get(arch).title}" + (f" ({shown})" if shown else ""))
        counts.append(s.totals.params)
    if counts[0] == counts[1]:
        raise ClassError("the two designs have the same number of parameters: ask something else")
    big = 0 if counts[0] > counts[1] else 1
    worked = f"{names[0]}: {fmt_int(counts[0])} parameters; {names[1]}: {fmt_int(counts[1])}."
    return Question("choice", f"Which has more parameters: {names[0]} or {names[1]}?", names[big], worked,
                    choices=tuple(names))


def choice_question(prompt: str, choices: list[str], right: int, worked: str = "") -> Question:
    """A multiple-choice question of the lecturer's own."""
    if not 2 <= len(choices) <= 8 or not 0 <= right < len(choices):
        raise ClassError("a multiple-choice question needs 2 to 8 choices and one right answer among them")
    clean = tuple(_plain(c, 120) for c in choices)
    if len(set(clean)) != len(clean) or not all(clean):
        raise ClassError("each choice needs its own text")
    return Question("choice", _plain(prompt, 400), clean[right], _plain(worked, 600), choices=clean)


# --- the class ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassState:
    """What a page needs to draw a class (read every poll)."""

    code: str
    title: str
    stop: str                  # the lecturer's stop (a slug of core.lecture)
    stop_changed: float        # time.time() when the lecturer moved there
    ends_at: float
    ended: bool
    question: int | None       # the open (or last revealed) question's number
    revealed: bool             # whether that question's answer has been revealed
    following: int             # students who followed within FOLLOWING_S
    joined: int                # students who ever joined

    @property
    def live(self) -> bool:
        return not self.ended and time.time() < self.ends_at


@dataclass(frozen=True)
class Tally:
    """The answers to one question, without names: counts per answer (choice) or right/wrong."""

    question: Question
    number: int
    revealed: bool
    counts: dict[str, int]     # answer text -> students (choice), or {"right": n, "wrong": m}
    total: int


def behind(stt: ClassState, following: bool, page_drawn: bool, stop_drawn: str | None,
           question_drawn: tuple[int | None, bool] | None) -> bool:
    """Whether a student's page must be drawn again: its last full run did not get to its end, a
    question was asked or revealed since (the stop's panel shows it), the class ended (the sidebar
    says so, polling stops), or the lecturer moved and the student follows. The page's poll and the
    server's push (pages/class_push.py) both ask this."""
    return (not page_drawn or (stt.question, stt.revealed) != question_drawn or not stt.live
            or (following and stt.stop != stop_drawn))


def lecturer_token(code: str, secret: bytes) -> str:
    return hmac.new(secret, f"lecturer:{code}".encode(), hashlib.sha256).hexdigest()[:32]


def valid_lecturer(code: str | None, token: str | None, secret: bytes) -> bool:
    if not code or not token or len(token) != 32:
        return False
    return hmac.compare_digest(token, lecturer_token(code, secret))


def read_code(raw: str | None) -> str | None:
    """A join code as typed (any case, spaces and dashes ignored), or None when it cannot be one."""
    if raw is None:
        return None
    code = "".join(ch for ch in raw.upper() if ch not in " -")[:20]
    return code if len(code) == CODE_LENGTH and all(ch in CODE_ALPHABET for ch in code) else None


def _plain(text: str, limit: int) -> str:
    """Text as a person typed it, safe to store and show: no control characters, trimmed."""
    text = "".join(ch for ch in str(text) if unicodedata.category(ch)[0] != "C")
    return " ".join(text.split())[:limit]


def clean_nickname(raw: str | None) -> str:
    return _plain(raw or "", MAX_NICKNAME)


class ClassStore:
    """The classes of a server (or of every replica sharing the results directory). Thread-safe;
    any number of processes may open the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._lock = threading.Lock()
        with self._tx() as db:
            db.execute("PRAGMA journal_mode=PERSIST")   # no shared-memory map (see core.train.store)
            db.execute("CREATE TABLE IF NOT EXISTS classes (code TEXT PRIMARY KEY, title TEXT, created REAL, "
                       "ends_at REAL, ended INTEGER, stop TEXT, stop_changed REAL)")
            db.execute("CREATE TABLE IF NOT EXISTS students (code TEXT, sid TEXT, nickname TEXT, joined REAL, "
                       "seen REAL, following INTEGER, PRIMARY KEY (code, sid))")
            db.execute("CREATE TABLE IF NOT EXISTS questions (code TEXT, number INTEGER, stop TEXT, body TEXT, "
                       "asked REAL, revealed INTEGER, PRIMARY KEY (code, number))")
            db.execute("CREATE TABLE IF NOT EXISTS answers (code TEXT, number INTEGER, sid TEXT, answer TEXT, "
                       "correct INTEGER, at REAL, PRIMARY KEY (code, number, sid))")
            db.execute("CREATE TABLE IF NOT EXISTS runs (code TEXT, sid TEXT, stop TEXT, job TEXT, at REAL, "
                       "PRIMARY KEY (code, sid, stop))")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (BEGIN IMMEDIATE: writers across processes take turns)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- the lecturer -----------------------------------------------------------------------------
    def start(self, secret: bytes, title: str = "ConvNet Architectures", stop: str = "") -> tuple[str, str]:
        """A new class: (join code, the lecturer's token)."""
        now = time.time()
        with self._tx() as db:
            for _ in range(20):
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
                if not db.execute("SELECT 1 FROM classes WHERE code = ?", (code,)).fetchone():
                    break
            else:
                raise ClassError("no free join code; try again")
            db.execute("INSERT INTO classes VALUES (?, ?, ?, ?, 0, ?, ?)",
                       (code, _plain(title, 120), now, now + CLASS_HOURS * 3600, stop, now))
        return code, lecturer_token(code, secret)

    def move(self, code: str, token: str, secret: bytes, stop: str) -> None:
        self._lecturer(code, token, secret)
        with self._tx() as db:
            db.execute("UPDATE classes SET stop = ?, stop_changed = ? WHERE code = ?", (stop, time.time(), code))

    def ask(self, code: str, token: str, secret: bytes, question: Question) -> int:
        """Opens a question (the one open before it is revealed first); its number."""
        self._lecturer(code, token, secret)
        with self._tx() as db:
            stop = db.execute("SELECT stop FROM classes WHERE code = ?", (code,)).fetchone()[0]
            db.execute("UPDATE questions SET revealed = 1 WHERE code = ?", (code,))
            n = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM questions WHERE code = ?", (code,)).fetchone()[0]
            db.execute("INSERT INTO questions VALUES (?, ?, ?, ?, ?, 0)",
                       (code, n, stop, json.dumps(asdict(question)), time.time()))
        return n

    def reveal(self, code: str, token: str, secret: bytes, number: int) -> None:
        self._lecturer(code, token, secret)
        with self._tx() as db:
            db.execute("UPDATE questions SET revealed = 1 WHERE code = ? AND number = ?", (code, number))

    def end(self, code: str, token: str, secret: bytes) -> None:
        self._lecturer(code, token, secret)
        with self._tx() as db:
            db.execute("UPDATE classes SET ended = 1 WHERE code = ?", (code,))

    def answers_csv(self, code: str, token: str, secret: bytes) -> str:
        """Every answer of the class (the lecturer's download): question, prompt, nickname, answer, right."""
        self._lecturer(code, token, secret)
        with self._lock:
            rows = self._db.execute(
                "SELECT q.number, q.body, s.nickname, a.answer, a.correct, a.at FROM answers a "
                "JOIN questions q ON q.code = a.code AND q.number = a.number "
                "LEFT JOIN students s ON s.code = a.code AND s.sid = a.sid WHERE a.code = ? "
                "ORDER BY q.number, a.at", (code,)).fetchall()
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["question", "prompt", "nickname", "answer", "right", "seconds_after_asked"])
        asked = {n: t for n, t in self._asked(code)}
        for number, body, nick, answer, correct, at in rows:
            w.writerow([number, json.loads(body)["prompt"], nick or "", answer, bool(correct),
                        round(at - asked.get(number, at), 1)])
        return buf.getvalue()

    def _asked(self, code: str) -> list[tuple[int, float]]:
        with self._lock:
            return self._db.execute("SELECT number, asked FROM questions WHERE code = ?", (code,)).fetchall()

    def _lecturer(self, code: str, token: str, secret: bytes) -> None:
        if not valid_lecturer(code, token, secret):
            raise ClassError("Only the lecturer's link can do this.")
        st = self.state(code)
        if not st.live:
            raise ClassError("This class has ended.")

    # --- students ---------------------------------------------------------------------------------
    def join(self, code: str, sid: str, nickname: str = "") -> None:
        st = self.state(code)
        if not st.live:
            raise ClassError("This class has ended.")
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO students VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (code, sid) DO UPDATE SET "
                       "nickname = excluded.nickname, seen = excluded.seen, following = 1",
                       (code, sid, clean_nickname(nickname), now, now))

    def member(self, code: str, sid: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM students WHERE code = ? AND sid = ?", (code, sid)).fetchone() is not None

    def seen(self, code: str, sid: str, following: bool) -> None:
        """A student's poll: whether they follow the lecturer right now."""
        self.seen_many(code, {sid: following})

    def seen_many(self, code: str, following: dict[str, bool]) -> None:
        """Several students present at once (sid -> whether they follow), in one transaction: the
        server's push reports the followers whose pages it serves."""
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE students SET seen = ?, following = ? WHERE code = ? AND sid = ?",
                           [(now, int(f), code, sid) for sid, f in following.items()])

    def answer(self, code: str, sid: str, number: int, text: str) -> bool:
        """Records a student's answer; whether it is right. Refused (ClassError) for a student who
        has not joined, a second answer, or an answer after the reveal."""
        text = _plain(text, 200)
        if not text:
            raise ClassError("Type or pick an answer first.")
        q, revealed = self.question(code, number)
        if revealed:
            raise ClassError("The answer has been revealed: this question takes no more answers.")
        if not self.member(code, sid):
            raise ClassError("Join the class first.")
        right = q.grade(text)
        try:
            with self._tx() as db:
                db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)", (code, number, sid, text, int(right),
                                                                          time.time()))
        except sqlite3.IntegrityError:
            raise ClassError("You have answered this question already: one answer each.") from None
        return right

    def my_answer(self, code: str, sid: str, number: int) -> tuple[str, bool] | None:
        with self._lock:
            row = self._db.execute("SELECT answer, correct FROM answers WHERE code = ? AND number = ? AND sid = ?",
                                   (code, number, sid)).fetchone()
        return (row[0], bool(row[1])) if row else None

    def register_run(self, code: str, sid: str, stop: str, job: str) -> None:
        """A student's run for the class board (their newest run at this stop)."""
        with self._tx() as db:
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?) ON CONFLICT (code, sid, stop) DO UPDATE SET "
                       "job = excluded.job, at = excluded.at", (code, sid, stop, job, time.time()))

    def runs(self, code: str, stop: str) -> list[tuple[str, str]]:
        """(nickname, job id) of the class's runs at a stop, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT COALESCE(s.nickname, ''), r.job FROM runs r LEFT JOIN students s "
                                    "ON s.code = r.code AND s.sid = r.sid WHERE r.code = ? AND r.stop = ? "
                                    "ORDER BY r.at", (code, stop)).fetchall()
        return [(nick or "anonymous", job) for nick, job in rows]

    # --- what everyone reads ------------------------------------------------------------------------
    def state(self, code: str) -> ClassState:
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT title, stop, stop_changed, ends_at, ended FROM classes WHERE code = ?",
                                   (code,)).fetchone()
            if row is None:
                raise ClassError(f"There is no class with the code {code}.")
            following, joined = self._db.execute(
                "SELECT COALESCE(SUM(following = 1 AND seen >= ?), 0), COUNT(*) FROM students WHERE code = ?",
                (now - FOLLOWING_S, code)).fetchone()
            q, revealed = self._db.execute("SELECT number, revealed FROM questions WHERE code = ? ORDER BY number DESC "
                                           "LIMIT 1", (code,)).fetchone() or (None, 0)
        title, stop, changed, ends_at, ended = row
        return ClassState(code, title, stop, changed, ends_at, bool(ended), q, bool(revealed), int(following),
                          int(joined))

    def question(self, code: str, number: int) -> tuple[Question, bool]:
        """A question and whether it has been revealed."""
        with self._lock:
            row = self._db.execute("SELECT body, revealed FROM questions WHERE code = ? AND number = ?",
                                   (code, number)).fetchone()
        if row is None:
            raise ClassError(f"There is no question {number} in this class.")
        d = json.loads(row[0])
        d["choices"] = tuple(d["choices"])
        return Question(**d), bool(row[1])

    def tally(self, code: str, number: int) -> Tally:
        q, revealed = self.question(code, number)
        with self._lock:
            rows = self._db.execute("SELECT answer, correct FROM answers WHERE code = ? AND number = ?",
                                    (code, number)).fetchall()
        if q.kind == "choice":
            counts = {c: 0 for c in q.choices}
            for a, _ in rows:
                counts[a] = counts.get(a, 0) + 1
        else:
            counts = {"right": sum(1 for _, c in rows if c), "wrong": sum(1 for _, c in rows if not c)}
        return Tally(q, number, revealed, counts, len(rows))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def class_store() -> ClassStore:
    """The results directory's class store (`core.train.store.results_dir()`)."""
    from core.train.store import results_dir

    return ClassStore(results_dir() / "classes.sqlite")


def qr_svg(url: str) -> str:
    """A QR code of `url` as SVG text (to show on the projector)."""
    import segno

    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="svg", scale=8, border=2, dark="#111111")
    return buf.getvalue().decode()
