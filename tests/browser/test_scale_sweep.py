"""The scale sweep in the Evaluate tab: SKU's lambda swept on the real default model, the front drawn
with the shipped point, Original and ECO marked, and the table filled; the adapter left as it was."""
import pytest

from scripts.screenshots import LONG, open_tab, shoot
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_sku_scale_sweep_draws_the_front_with_its_references(server, page):
    open_tab(page, server, "Evaluate")
    table = page.locator("#df-scale")
    assert "Run a scale sweep" in table.inner_text()
    page.locator("#tb-scales textarea").fill("0, 2")  # the shipped lambda (1) joins the grid
    page.locator("#btn-scale-sweep").click()
    page.wait_for_function("() => (document.querySelector('#df-scale').innerText.match(/\\bsku\\b/g) || [])"
                           ".length >= 3", timeout=LONG)
    shown = table.inner_text()
    assert "original" in shown and "eco" in shown and "true" in shown.lower()  # the shipped point is marked
    front = page.locator("#plot-scale-front")
    # the curve (three scales), the star and the two references; the plot may paint after the table
    page.wait_for_function("() => document.querySelectorAll('#plot-scale-front .scatterlayer .point').length >= 6",
                           timeout=30_000)
    legend = front.locator(".legendtext").all_text_contents()  # SVG text: no innerText
    assert {"SKU", "Original", "ECO"} <= set(legend) and any(t.startswith("shipped (λ 1") for t in legend), legend
    shoot(page, ARTIFACTS / "scale_sweep.png")
