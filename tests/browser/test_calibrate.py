"""ECO calibration in the Optimize tab: one setting scanned on the real default model, its front drawn
point by point, the result line written, and the chosen setting applied to the Playground."""
import pytest

from app import texts
from app.tabs.calibrate import LABELS
from scripts.screenshots import LONG, open_tab, shoot
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_calibration_draws_its_front_and_applies_the_choice(server, page):
    open_tab(page, server, "Optimize")
    for label in LABELS[1:]:  # one setting, the scan only: seven points
        page.get_by_label(label).uncheck()
    page.get_by_label(texts.CALIBRATE_STEPS).fill("0")
    page.get_by_label(texts.CALIBRATE_PROMPTS).fill("2")
    result = page.locator("#calibrate-result")
    assert "Run a calibration" in result.inner_text()
    page.locator("#btn-calibrate").click()
    page.wait_for_function("() => /Chosen|No setting qualified/.test("
                           "document.querySelector('#calibrate-result').innerText)", timeout=LONG)
    points = page.locator("#plot-front .scatterlayer .point")
    assert points.count() >= 7 + 1  # the scan's points and the Original
    text = result.inner_text()
    shoot(page, ARTIFACTS / "calibrate.png")
    if "Chosen" in text:
        page.locator("#btn-apply-calibrated").click()
        page.get_by_role("tab", name="Playground").click()
        strength = page.locator("#sl-strength input[type=number]")
        sigma = float(text.split("σ = ")[1].split(" ")[0])
        page.wait_for_function(f"() => Math.abs(parseFloat(document.querySelector('#sl-strength input[type=number]')"
                               f".value) - {sigma}) / {sigma} < 0.01", timeout=10_000)
        assert strength.count() == 1
