"""The Showcase tab in a real browser: one click runs Original, ECO, ELM and SKU on the preset's
showcase prompts and shows them as one page, with the gate's decision and the forget names each
answer says, and a self-contained HTML report to download."""
import urllib.request

import pytest

from scripts.screenshots import shoot, showcase
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]
VARIANTS = ("original", "eco", "elm", "sku")


def test_the_showcase_renders_all_four_variants_for_every_prompt(server, page):
    page.goto(server)
    page.get_by_role("tab", name="Showcase").click()
    showcase(page, tokens=16)  # the screenshot's step, with shorter answers
    cards = page.locator("#showcase-page .lethe-card")
    assert cards.count() == 3
    for i in range(3):
        card = cards.nth(i)
        assert [a.get_attribute("data-variant") for a in card.locator(".lethe-answer").all()] == list(VARIANTS)
        assert card.locator(".lethe-said-leak, .lethe-said-clean").count() == 4  # one metric per variant
        assert "p(forget)" in card.locator(".lethe-card-gate").inner_text()
    assert "says Harry Potter" in cards.nth(0).locator('[data-variant="original"]').inner_text()
    link = page.locator("#showcase-report a").first.get_attribute("href")
    html = urllib.request.urlopen(link if link.startswith("http") else server.rstrip("/") + link).read().decode()
    assert html.startswith("<!doctype html>") and html.count('class="lethe-card"') == 3 and "<style>" in html
    shoot(page, ARTIFACTS / "showcase.png")
