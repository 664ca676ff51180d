"""What a visitor sees in the first minute, before running anything: one control per setting, tables
that say what will appear in them, a "How to read this" line on every tab, and the preset's
example prompts that fill the prompt box with one click."""
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]
TABS = ("Playground", "Compare", "Showcase", "Optimize", "Train", "Evaluate", "Robustness", "Model")


def test_every_tab_explains_itself_and_no_table_shows_placeholder_headers(server, page):
    page.goto(server)
    seen = []
    for tab in TABS:
        page.get_by_role("tab", name=tab).click()
        panel = page.get_by_role("tabpanel").filter(visible=True)
        panel.get_by_text("How to read this").first.wait_for(timeout=10_000)
        for head in panel.locator("thead").all():
            cells = [c.strip() for c in head.locator("th").all_text_contents()]
            seen.append(cells)
            assert cells[:3] != ["1", "2", "3"] and all(cells), (tab, cells)
    assert any(c[0].startswith("Run a sweep to see forget vs retain accuracy") for c in seen), seen
    assert len(seen) >= 3  # the sweep, the evaluation and the attack tables


def test_the_strength_control_appears_once(server, page):
    page.goto(server)
    page.locator("#sl-strength").wait_for(timeout=30_000)
    assert page.get_by_text("Strength (σ)", exact=True).count() == 1
    assert page.locator("#nb-strength").count() == 0


def test_the_examples_fill_the_prompt(server, page):
    page.goto(server)
    prompt = page.locator("#prompt textarea")
    assert prompt.input_value() == "Who is Harry Potter?"  # the page opens on the preset's forget prompt
    examples = page.locator("#play-examples button")
    examples.nth(2).wait_for(timeout=30_000)  # the examples render after the prompt box
    assert examples.count() == 3
    examples.nth(1).click()  # the attacked one: the name replaced by a description
    page.wait_for_function("() => document.querySelector('#prompt textarea').value.includes('orphaned wizard')",
                           timeout=10_000)
    page.locator("#gate-status").get_by_text("p(forget)").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-examples button").nth(2).click()  # click() waits for the button
    page.wait_for_function(
        "() => document.querySelector('#compare-prompt textarea').value === 'Who wrote The Lord of the Rings?'",
        timeout=10_000)
