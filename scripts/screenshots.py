"""Screenshots of every tab for docs/screenshots/: `make screenshots`.

Starts Lethe on the embedded default model (offline, with its own cache), opens each tab in headless
Debian Chromium, does the first thing a visitor would try there (generate an example, compare it,
run the showcase, a three-point sweep, a short SKU training, an evaluation with the probe metrics,
one prompt attack) and saves the page as docs/screenshots/<tab>.png. It takes about a quarter of an
hour on two CPU cores; `--tabs` picks some, `--url` uses a running server. Train runs last of the
tabs that use a model: its new adapter replaces the SKU the other tabs show.

The browser tests share this file: their server is `serve()`, their browser `launch_browser()`,
and a test that drives a tab the way the screenshot does calls the same step (`STEPS[tab]`), so
the docs show what the tests check.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
LONG = 600_000  # ms: a step on the default model on two CPU cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(log_path: Path, env: dict | None = None, start_timeout: float = 240, ready_timeout: float = 600):
    """`launch.py --offline` on a free port, logging to `log_path`; yields its URL once the gate
    classifier is ready (on a fresh cache it trains at first start, about two minutes on 2 cores)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), "--offline"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait(lambda: _answers(url), proc, start_timeout, f"the server did not start, see {log_path}")
            _wait(lambda: "gate classifier" in log_path.read_text(errors="replace"), proc, ready_timeout,
                  f"the gate classifier did not get ready, see {log_path}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


def _wait(ready, proc, timeout: float, message: str) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(message)
        time.sleep(0.5)


def launch_browser(pw):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Debian chromium is not installed at {CHROMIUM}: run `make browser` as root "
                           "(or `sudo apt-get install -y chromium`).")
    return pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)


def open_tab(page, url: str, tab: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name=tab).click()


def shoot(page, path: Path) -> Path:
    """The whole page as a PNG at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let the last update paint
    page.screenshot(path=str(path), full_page=True)
    return path


# ---------------------------------------------------------------------------- one step per tab

def playground(page) -> None:
    """The first example (a forget prompt), generated: gate line, tokens, both answers."""
    page.locator("#play-examples button").first.click()
    page.locator("#gate-status").get_by_text("p(forget)").wait_for(timeout=LONG)
    page.locator("#btn-generate").click()
    page.wait_for_function("() => document.querySelector('#speed').innerText.includes('tokens/s')", timeout=LONG)


def compare(page) -> None:
    """The prompt the tab opens with, compared: four answers, the metrics table, the diffs."""
    page.locator("#btn-compare").click()
    page.locator("#cmp-metrics table").wait_for(timeout=LONG)


def showcase(page, tokens: int | None = None) -> None:
    """The showcase run to its end: every prompt's four answers and the HTML report."""
    if tokens is not None:
        box = page.locator("#showcase-tokens input[type=number]")
        box.fill(str(tokens))
        box.press("Enter")
    page.locator("#btn-showcase").click()
    page.locator("#showcase-report a").first.wait_for(timeout=LONG)


def optimize(page) -> None:
    """A three-point strength sweep: the dose-response plot and its table."""
    page.get_by_label("Strengths (comma-separated)").fill("10, 100, 1000")
    page.locator("#btn-sweep").click()
    page.wait_for_function("() => [...document.querySelectorAll('.block')].some(b => "  # the table's block
                           "b.innerText.includes('retain_logprob') && /\\n1000\\s/.test(b.innerText))", timeout=LONG)


def train(page) -> None:
    """A ten-step SKU adapter: the loss curves and the variants ready."""
    page.locator("#dd-method input").click()
    page.get_by_role("option", name="sku").click()
    steps = page.locator("#nb-train-steps input")
    steps.fill("10")
    steps.press("Tab")
    page.locator("#btn-train").click()
    page.locator("#train-status").get_by_text("Trained").wait_for(timeout=LONG)


def evaluate(page) -> None:
    """Every variant on the probe metrics of the test split: the table and both charts."""
    metrics = page.locator("#cg-metrics")
    for name in ("forget_probe_logprob", "retain_probe_logprob", "forget_recall", "retain_fpr",
                 "retain_perplexity", "retain_kl"):
        metrics.get_by_label(name, exact=True).uncheck()
    page.locator("#btn-eval").click()
    page.wait_for_function(  # both rows of the last variant
        "() => document.querySelector('#df-results').innerText.split('eco+sku').length > 2", timeout=LONG)
    page.locator("#plot-scatter .js-plotly-plot").first.wait_for(timeout=LONG)


def robustness(page, attacks=("jailbreak",), limit: int = 2) -> None:
    """Original and ECO under prompt attacks: the table, the heat-map, the gate's recall, examples."""
    variants, boxes = page.locator("#cg-attack-variants"), page.locator("#cg-attacks")
    for name in ("elm", "sku", "eco+elm", "eco+sku"):
        variants.get_by_label(name, exact=True).uncheck()
    for box in boxes.get_by_role("checkbox").all():
        box.uncheck()
    for name in attacks:
        boxes.get_by_label(name, exact=True).check()
    page.get_by_text("Attack settings").click()
    box = page.locator("#attack-limit input")
    box.fill(str(limit))
    box.press("Tab")
    page.locator("#btn-attack").click()
    page.wait_for_function(f"() => document.querySelector('#df-attack').innerText.includes('{attacks[-1]}')",
                           timeout=LONG)
    page.locator("#attack-examples").get_by_text("original →").first.wait_for(timeout=LONG)


def model(page) -> None:
    """Nothing to run: the loaded model and the preset."""
    page.locator("#dd-model").wait_for(timeout=30_000)


# in this order: training replaces the SKU variant, so it comes after every tab that shows the shipped one
STEPS = {"Playground": playground, "Compare": compare, "Showcase": showcase, "Optimize": optimize,
         "Evaluate": evaluate, "Robustness": robustness, "Train": train, "Model": model}


def screenshot_all(url: str, tabs, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            for tab in tabs:
                page = browser.new_context(viewport=VIEWPORT).new_page()
                started = time.time()
                open_tab(page, url, tab)
                STEPS[tab](page)
                saved.append(shoot(page, out / f"{tab.lower()}.png"))
                print(f"lethe: {saved[-1]} ({time.time() - started:.0f} s)", flush=True)
                page.context.close()
        finally:
            browser.close()
    return saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tabs", nargs="+", choices=list(STEPS), default=list(STEPS), help="the tabs to shoot")
    ap.add_argument("--url", help="a running Lethe server (default: start one on the default model)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    args = ap.parse_args(argv)
    if args.url:
        screenshot_all(args.url, args.tabs, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="lethe-screenshots-") as cache:
        with serve(Path(cache) / "server.log", env={"LETHE_CACHE_DIR": cache}) as url:
            screenshot_all(url, args.tabs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
