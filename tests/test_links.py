"""Links: every query value read in one place, refused with a sentence instead of a traceback;
session ids only as issued by the server; read-only share tokens."""

from __future__ import annotations

import os
import stat

from core.links import (new_session_id, read_choice, read_flag, read_int, read_job_id, server_secret,
                        share_token, valid_session_id, valid_share_token)


def test_read_int_takes_ascii_digits_in_range_only():
    assert read_int("13", "layer", 0, 22) == (13, None)
    assert read_int(None, "layer", 0, 22) == (None, None) and read_int("", "layer", 0, 22) == (None, None)
    assert "²".isdigit()                                    # what broke the explorer: str.isdigit accepts it
    value, problem = read_int("²", "layer", 0, 22)
    assert value is None and problem == "layer='²' is not a whole number"
    value, problem = read_int("9" * 5000, "layer", 0, 22)   # refused unread, the message stays short
    assert value is None and "not a whole number" in problem and len(problem) < 80
    assert read_int("23", "layer", 0, 22) == (None, "layer=23 is outside 0 to 22")
    assert read_int("-1", "layer", 0, 22)[0] is None and read_int(" 1", "layer", 0, 22)[0] is None


def test_read_choice_flag_and_job_id():
    assert read_choice("vgg16", "arch", ["alexnet", "vgg16"]) == ("vgg16", None)
    assert read_choice("16", "size", [16, 32]) == (16, None)          # compared as text, returned as given
    assert read_choice("VGG16", "arch", ["alexnet", "vgg16"])[1] == "arch='VGG16' is not one of alexnet, vgg16"
    assert read_flag("1") and read_flag("true") and not read_flag("0") and not read_flag(None)
    assert read_job_id("0123456789ab") == "0123456789ab"
    assert read_job_id("../../etc") is None and read_job_id("0123456789AB") is None


def test_session_ids_are_the_servers_own(tmp_path):
    secret = b"k" * 32
    sid = new_session_id(secret)
    token, tag = sid.split(".")
    assert len(token) == 32 and int(token, 16) >= 0                 # 128 random bits
    assert valid_session_id(sid, secret)
    assert sid != new_session_id(secret)
    assert not valid_session_id(sid, b"another server")
    for guess in ("test", "a", "x" * 5000, token, f"{token}.{'0' * 32}", sid.upper(), None):
        assert not valid_session_id(guess, secret), guess


def test_share_tokens_are_per_job():
    secret = b"s" * 32
    t = share_token("0123456789ab", secret)
    assert valid_share_token("0123456789ab", t, secret)
    assert not valid_share_token("ba9876543210", t, secret)        # another job
    assert not valid_share_token("0123456789ab", t, b"other") and not valid_share_token("0123456789ab", None, secret)


def test_the_server_secret_is_made_once_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVNETLAB_SECRET", raising=False)
    a = server_secret(tmp_path)
    assert server_secret(tmp_path) == a and len(a) == 64               # kept: ids survive a restart
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600
    monkeypatch.setenv("CONVNETLAB_SECRET", "from-the-environment")
    assert server_secret(tmp_path) == b"from-the-environment"
