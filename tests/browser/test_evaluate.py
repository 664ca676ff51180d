"""The Evaluate tab in a real browser, and the stable API names through gradio_client."""
import pytest

from scripts.screenshots import evaluate, shoot
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]
API = {"/classify", "/select_tokens", "/generate", "/sweep", "/optimize", "/evaluate", "/export_run"}


def test_evaluate_tab_fills_the_table_and_draws_charts(server, page):
    page.goto(server)
    page.get_by_role("tab", name="Evaluate").click()
    evaluate(page)  # the screenshot's step: every variant on the probe metrics, waits for the last rows
    table = page.locator("#df-results")
    assert "eco" in table.inner_text() and "original" in table.inner_text()
    assert "retain_probe_accuracy" in table.inner_text()
    page.locator("#plot-bars .js-plotly-plot").first.wait_for(timeout=60_000)
    shoot(page, ARTIFACTS / "evaluate.png")


def test_the_api_names_are_stable(server):
    from gradio_client import Client

    names = set(Client(server, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert API <= names, API - names
    assert not any(n.startswith("/false") for n in names)
