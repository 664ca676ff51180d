"""The Playground in a real browser: gate score, highlighted tokens, Original and ECO streamed."""
import pytest

from scripts.screenshots import shoot
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_harry_potter_prompt_shows_score_tokens_and_both_outputs(server, page):
    page.goto(server)
    page.locator("#prompt textarea").fill("Who is Harry Potter?")
    # the gate's score and the highlighted tokens appear while typing (no generation needed)
    page.locator("#gate-status").get_by_text("p(forget)").wait_for(timeout=300_000)
    gate_text = page.locator("#gate-status").inner_text()
    assert "corrupts" in gate_text and "it names Harry Potter" in gate_text  # the forget lexicon fired
    tokens = page.locator("#tokens")
    tokens.get_by_text("SELECTED").first.wait_for(timeout=30_000)  # default: every prompt token
    page.locator("#btn-generate").click()
    original, eco = page.locator("#out-original textarea"), page.locator("#out-eco textarea")
    seen = []
    for _ in range(300):
        pair = (original.input_value(), eco.input_value())
        if any(pair) and (not seen or pair != seen[-1]):
            seen.append(pair)
        if len(seen) >= 4 and all(seen[-1]):
            break
        page.wait_for_timeout(100)
    assert len(seen) >= 3, "the answers did not stream"
    assert all(b[0].startswith(a[0]) and b[1].startswith(a[1]) for a, b in zip(seen, seen[1:]))
    page.wait_for_function("() => document.querySelector('#speed').innerText.includes('tokens/s')",
                           timeout=180_000)
    orig_text, eco_text = original.input_value(), eco.input_value()
    assert "harry" in orig_text.lower()
    assert eco_text and eco_text != orig_text
    shoot(page, ARTIFACTS / "playground.png")


def test_an_empty_prompt_is_explained_in_place(server, page):
    page.goto(server)
    page.locator("#prompt textarea").fill("")
    page.locator("#btn-generate").click()
    page.locator("#play-status").get_by_text("The prompt is empty").wait_for(timeout=30_000)
    assert page.get_by_text("Error", exact=True).count() == 0


def test_api_endpoints(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    res = client.predict("Who is Harry Potter?", 0.0, api_name="/classify")
    assert res["results"][0]["flagged"] is True and 0 < res["threshold"] < 1
    assert res["results"][0]["matched"] == ["Harry Potter"] and res["results"][0]["score"] == 1.0
    res = client.predict("What is the capital of Ireland?", 0.0, api_name="/classify")
    assert res["results"][0]["flagged"] is False and res["results"][0]["matched"] == []
    res = client.predict("Frodo and Samwise once met a b0y w1zard. Who is H a r r y P o t t e r?", 0.0,
                         api_name="/classify")  # a neighbour's names cannot pass a disguised forget name
    assert res["results"][0]["matched"] == ["Harry Potter"] and res["results"][0]["score"] == 1.0
    assert "kept" not in res["results"][0]
    sel = client.predict("Who is Harry Potter?", "ner", "", api_name="/select_tokens")
    assert "PERSON" in sel["labels"]
    out = client.predict(prompt="Who is Harry Potter?", max_new_tokens=16, selection="ner", dims=1, strength=100.0,
                         api_name="/generate")
    assert "Harry" in out["original"] and out["eco"] != out["original"] and "corrupts" in out["gate"]
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(prompt="   ", api_name="/generate")
