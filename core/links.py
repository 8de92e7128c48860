"""What a link can carry, read in one place: query-parameter values and session ids.

Every reader takes the raw text from the URL (or None when absent) and returns `(value, problem)`:
the parsed value, or None with one sentence for the page to show. None of them raises, and each
bounds the text's length before parsing it, so `layer=²` (a superscript passes `str.isdigit`) or
a 5,000-digit layer is refused with a message instead of a traceback.

Session ids are issued by the server: 128 random bits and an HMAC-SHA256 tag under a server
secret. A made-up `sid=test`, or one word that two students both pick, is refused and a fresh id
issued, so nobody shares runs by accident. The secret comes from $CONVNETLAB_SECRET, else from a
file in the results directory made on first use (so ids survive a server restart).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Sequence, TypeVar

T = TypeVar("T")
MAX_TEXT = 200          # longer values are refused unread


def read_int(raw: str | None, name: str, lo: int, hi: int) -> tuple[int | None, str | None]:
    """A whole number in [lo, hi], ASCII digits only."""
    if raw is None or raw == "":
        return None, None
    if len(raw) > 9 or not re.fullmatch(r"[0-9]+", raw):
        return None, f"{name}={_show(raw)} is not a whole number"
    value = int(raw)
    if not lo <= value <= hi:
        return None, f"{name}={value} is outside {lo} to {hi}"
    return value, None


def read_choice(raw: str | None, name: str, choices: Sequence[T]) -> tuple[T | None, str | None]:
    """One of `choices` (compared as text)."""
    if raw is None or raw == "":
        return None, None
    by_text = {str(c): c for c in choices}
    if len(raw) > MAX_TEXT or raw not in by_text:
        return None, f"{name}={_show(raw)} is not one of {', '.join(list(by_text)[:12])}"
    return by_text[raw], None


def read_flag(raw: str | None) -> bool:
    """`1` (or `true`) is on; anything else, or nothing, is off."""
    return raw is not None and raw.lower() in ("1", "true")


def read_job_id(raw: str | None) -> str | None:
    """A job id as the runner makes them (12 lowercase hex digits), else None."""
    return raw if raw is not None and re.fullmatch(r"[0-9a-f]{12}", raw) else None


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 20 else raw[:20] + "...")


# --- session ids -----------------------------------------------------------------------------------

def server_secret(folder: Path | None = None) -> bytes:
    """$CONVNETLAB_SECRET, else the secret kept in `folder` (made on first use, readable by the owner only)."""
    env = os.environ.get("CONVNETLAB_SECRET")
    if env:
        return env.encode()
    from core.train.store import results_dir

    path = (folder or results_dir()) / "secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _tag(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def new_session_id(secret: bytes) -> str:
    """128 random bits and their tag: '<32 hex>.<32 hex>'."""
    token = secrets.token_hex(16)
    return f"{token}.{_tag(secret, 'sid', token)}"


def valid_session_id(raw: str | None, secret: bytes) -> bool:
    """True only for an id this server (this secret) issued."""
    if raw is None or not re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{32}", raw):
        return False
    token, tag = raw.split(".")
    return hmac.compare_digest(tag, _tag(secret, "sid", token))


def share_token(job_id: str, secret: bytes) -> str:
    """The read-only share link's proof for one job: whoever has it may look, not cancel."""
    return _tag(secret, "view", job_id)


def valid_share_token(job_id: str | None, raw: str | None, secret: bytes) -> bool:
    if job_id is None or raw is None or len(raw) != 32:
        return False
    return hmac.compare_digest(raw, share_token(job_id, secret))


# --- the server's public address ------------------------------------------------------------------

def public_base(configured: str | None, browser_url: str | None, host: str | None, page: str) -> str | None:
    """The address a share link starts with (scheme, host and any path prefix, no trailing slash):
    `configured` ($CONVNETLAB_PUBLIC_URL, a hosted class's public address) when it is an http(s) URL;
    else the address the browser shows for this page (`browser_url`, e.g. http://host:8501/lab)
    with the page's own path (`page`, e.g. "lab") taken off; else http:// and the request's Host
    header; else None (the link stays a path)."""
    for raw in (configured, browser_url):
        if raw and len(raw) <= 2000 and re.fullmatch(r"https?://[^\s?#]+", raw.strip()):
            base = raw.strip().rstrip("/")
            if raw is browser_url and base.endswith("/" + page):
                base = base[:-len(page) - 1]
            return base
    if host and re.fullmatch(r"[A-Za-z0-9.\-\[\]:]{1,300}", host):
        return f"http://{host}"
    return None


def absolute_link(base: str | None, path: str) -> str:
    """`path` ("/lab?task=unet&job=...") under `base`, or the path itself when there is no base."""
    return f"{base}{path}" if base else path
