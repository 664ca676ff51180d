"""The Model tab in a real browser: models are picked from the server's allow-list, and nothing
in the page lets a visitor switch on remote code."""
import pytest

from scripts.screenshots import shoot
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_model_tab_offers_only_allowed_models_and_no_remote_code_switch(server, page):
    page.goto(server)
    page.get_by_role("tab", name="Model").click()
    picker = page.locator("#dd-model")
    picker.wait_for(timeout=30_000)
    assert "default" in picker.locator("input").input_value()
    picker.locator("input").click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    shown = [t.replace("✓", "").strip() for t in options.all_inner_texts()]
    assert shown[0] == "default" and not any(o.startswith(("/", ".", "~")) for o in shown), shown
    text = page.locator("body").inner_text().lower()
    assert "remote code" not in text and "trust" not in text
    shoot(page, ARTIFACTS / "model.png")
