"""A hosted class (scripts/serve-class.sh): a local Ray head, two dashboard replicas and HAProxy with
cookie-sticky sessions, all on loopback. A run started through one replica is found, watched and
cancelled through the other; stopping the script stops everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
COOKIE = "CONVNETLAB_REPLICA"

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"CLASS TESTS SKIPPED: no Chromium at {CHROMIUM}", allow_module_level=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    from bench.bench_class import free_port

    port = free_port(2)
    env = {**os.environ, "CONVNETLAB_RESULTS": str(tmp_path_factory.mktemp("class-results"))}
    env.pop("RAY_ADDRESS", None)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    log = open(ROOT / "test-artifacts" / "serve-class.log", "w")
    proc = subprocess.Popen(["bash", "scripts/serve-class.sh", "--replicas", "2", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.time() + 300
        while time.time() < end and "== ready" not in (ROOT / "test-artifacts" / "serve-class.log").read_text():
            assert proc.poll() is None, (ROOT / "test-artifacts" / "serve-class.log").read_text()[-3000:]
            time.sleep(0.5)
        assert "== ready" in (ROOT / "test-artifacts" / "serve-class.log").read_text(), "serve-class.sh never got ready"
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


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


def test_stopping_the_class_stops_everything_it_started(hosted):
    proc, port = hosted
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)
    time.sleep(1)
    assert not any(_listening(q) for q in (port, port + 1, port + 2))
    ray = subprocess.run(["pgrep", "-f", f"gcs_server.*--gcs_server_port={port + 100}"], capture_output=True)
    assert ray.returncode == 1, "the Ray head is still running"
