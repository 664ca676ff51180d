"""A live Lethe server on the real default model, and headless Chromium driven by Playwright."""
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def server():
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(ARTIFACTS.joinpath("server.log") if ARTIFACTS.mkdir(exist_ok=True) or True else None, "w")
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), "--offline"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early, see {log.name}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("server did not start in 240 s")
    # On a fresh machine the gate classifier trains at first start (about 2 minutes on 2 cores):
    # wait for it, so no test's own time limit pays for it.
    deadline = time.time() + 600
    while "gate classifier" not in Path(log.name).read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"the gate classifier did not get ready, see {log.name}")
        time.sleep(1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed at /usr/bin/chromium: run `make browser` as root "
                    "(or `sudo apt-get install -y chromium`).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()
