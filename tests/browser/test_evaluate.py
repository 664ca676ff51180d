"""The Evaluate tab in a real browser, and the stable API names through gradio_client."""
import pytest

from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]
API = {"/classify", "/select_tokens", "/generate", "/sweep", "/optimize", "/evaluate", "/export_run"}


def test_evaluate_tab_fills_the_table_and_draws_charts(server, page):
    page.goto(server)
    page.get_by_role("tab", name="Evaluate").click()
    metrics = page.locator("#cg-metrics")
    for name in ("forget_probe_logprob", "retain_probe_logprob", "forget_recall", "retain_fpr",
                 "retain_perplexity", "retain_kl"):
        metrics.get_by_label(name, exact=True).uncheck()
    page.locator("#btn-eval").click()
    table = page.locator("#df-results")
    table.get_by_text("retain_probe_accuracy").first.wait_for(timeout=400_000)
    page.locator("#plot-bars .js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('#df-results').innerText.split('probe_accuracy').length > 4",
        timeout=400_000)
    assert "eco" in table.inner_text() and "original" in table.inner_text()
    page.screenshot(path=str(ARTIFACTS / "evaluate.png"), full_page=True)


def test_the_api_names_are_stable(server):
    from gradio_client import Client

    names = set(Client(server, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert API <= names, API - names
    assert not any(n.startswith("/false") for n in names)
