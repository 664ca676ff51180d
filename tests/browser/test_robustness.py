"""The Robustness tab in a real browser: a prompt attack on Original and ECO fills the table, draws
the heat-map and the gate's recall, and shows each attacked prompt with the variants' answers.
One attack only: the limit bounds the generated answers, but every attack still scores all the
split's probes, which takes minutes on the default model on a CPU."""
import pytest

from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]
VARIANTS = {"original": True, "eco": True, "elm": False, "sku": False, "eco+elm": False, "eco+sku": False}
ATTACKS = ("jailbreak",)


def test_robustness_tab_attacks_fill_the_table_heatmap_and_examples(server, page):
    page.goto(server)
    page.get_by_role("tab", name="Robustness").click()
    variants, attacks = page.locator("#cg-attack-variants"), page.locator("#cg-attacks")
    for name, on in VARIANTS.items():
        box = variants.get_by_label(name, exact=True)
        box.check() if on else box.uncheck()
    for box in attacks.get_by_role("checkbox").all():
        box.uncheck()
    for name in ATTACKS:
        attacks.get_by_label(name, exact=True).check()
    page.get_by_text("Attack settings").click()
    limit = page.locator("#attack-limit input")
    limit.fill("2")
    limit.press("Tab")
    page.locator("#btn-attack").click()

    # the table and the heat-map grow after each attack: wait for the last attack's rows
    page.wait_for_function("() => document.querySelector('#df-attack').innerText.includes('jailbreak')",
                           timeout=500_000)
    page.locator("#plot-attack-heatmap .js-plotly-plot").first.wait_for(timeout=10_000)
    table = page.locator("#df-attack")
    shown = table.inner_text()
    for name in ("clean", *ATTACKS, "original", "eco"):
        assert name in shown, name
    heatmap = page.locator("#plot-attack-heatmap").inner_text()
    assert "clean" in heatmap and "jailbreak" in heatmap
    page.locator("#plot-gate-recall .js-plotly-plot").first.wait_for(timeout=10_000)
    examples = page.locator("#attack-examples")
    examples.get_by_text("original →").first.wait_for(timeout=10_000)
    assert "attacked prompt" in examples.inner_text()  # the legend names the prompt's spans
    page.screenshot(path=str(ARTIFACTS / "robustness.png"), full_page=True)
