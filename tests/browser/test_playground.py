"""The Playground in a real browser: type a prompt, watch the Original answer stream in."""
import pytest

from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_prompt_streams_an_answer(server, page):
    page.goto(server)
    page.locator("#prompt textarea").fill("Who is Harry Potter?")
    page.locator("#btn-generate").click()
    out = page.locator("#out-original textarea")
    seen = []
    for _ in range(200):
        text = out.input_value()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if len(seen) >= 3:
            break
        page.wait_for_timeout(100)
    assert len(seen) >= 2, "the answer did not stream"
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:]))
    page.wait_for_function("() => document.querySelector('.lethe-speed').innerText.includes('tokens/s')",
                           timeout=120_000)
    assert "harry" in out.input_value().lower()
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)


def test_empty_prompt_shows_a_clear_error(server, page):
    page.goto(server)
    page.locator("#btn-generate").click()
    page.get_by_text("The prompt is empty").first.wait_for(timeout=30_000)


def test_api_generate_matches_the_engine(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    text, speed = client.predict("Who is Harry Potter?", 16, 0.0, 1.0, 0, api_name="/generate")
    assert "Harry" in text and "tokens/s" in speed
