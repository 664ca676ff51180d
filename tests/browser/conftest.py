"""A live Lethe server on the real default model, and headless Chromium driven by Playwright.
Both come from scripts/screenshots.py, which the docs' screenshots use too."""
import pytest

from scripts.screenshots import VIEWPORT, launch_browser, serve
from tests.conftest import ARTIFACTS


@pytest.fixture(scope="session")
def server():
    # the session's own LETHE_CACHE_DIR (tests/conftest.py) reaches the server through the environment
    with serve(ARTIFACTS / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        try:
            b = launch_browser(pw)
        except RuntimeError as e:
            pytest.fail(str(e))
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    yield pg
    ctx.close()
