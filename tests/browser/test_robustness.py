"""The Robustness tab in a real browser: a prompt attack on Original and ECO fills the table, draws
the heat-map and the gate's recall, and shows each attacked prompt with the variants' answers.
One attack only: the limit bounds the generated answers, but every attack still scores all the
split's probes, which takes minutes on the default model on a CPU."""
import pytest

from scripts.screenshots import robustness, shoot
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ATTACKS = ("jailbreak",)


def test_robustness_tab_attacks_fill_the_table_heatmap_and_examples(server, page):
    page.goto(server)
    page.get_by_role("tab", name="Robustness").click()
    robustness(page, ATTACKS, limit=2)  # the screenshot's step: Original and ECO, up to the last rows
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
    shoot(page, ARTIFACTS / "robustness.png")
