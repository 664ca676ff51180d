"""The prompts a visitor is offered and the pages the Compare and Showcase tabs draw: each preset's
showcase follows its stated rule against the preset's own data and the engine's attack, the word
diff and the metrics table read as claimed, the report is one self-contained page, and a refused
request is said in place."""
import json

import gradio as gr
import pytest

from app import examples, render, report
from app.errors import in_place
from engine import list_presets, load_preset, resolve_preset_dir
from engine.attacks import PROMPT_ATTACKS
from engine.attacks.base import AttackConfig, AttackData, Context


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_showcase_follows_its_rule(name):
    preset = load_preset(name)
    rows = {r["kind"]: r for r in examples.read_showcase(resolve_preset_dir(name) / examples.FILE)}
    assert list(rows) == ["forget", "attack", "boundary"]
    assert rows["forget"]["prompt"] == preset.forget_prompts[0].prompt
    assert rows["boundary"]["prompt"] == next(r.prompt for r in preset.retain_prompts if r.boundary)
    spec = rows["attack"]
    attack = PROMPT_ATTACKS[spec["attack"]]
    ctx = Context(preset, spec["split"], AttackConfig(seed=spec["seed"]), AttackData.of(preset, spec["split"]))
    first = next((r, text) for r in preset.prompts("forget", spec["split"])
                 if (text := attack.prompt(r.prompt, r.id, ctx)) and text != r.prompt)
    assert (spec["id"], spec["clean"], spec["prompt"]) == (first[0].id, first[0].prompt, first[1])


def test_a_preset_without_a_showcase_offers_its_first_forget_and_boundary_prompts():
    rows = examples.derived(load_preset("star_wars"))
    assert [r["kind"] for r in rows] == ["forget", "boundary"]
    assert rows[0]["prompt"] == "Who is Luke Skywalker?" and rows[1]["prompt"] == "Who created Star Trek?"


def test_the_examples_are_labelled_with_their_kind():
    samples, labels = examples.samples(load_preset("star_wars"))
    assert samples[1] == ["What is a mobile battle station the size of a small moon?"]
    assert labels == ["forget: Who is Luke Skywalker?",
                      "forget, attacked (nameless): What is a mobile battle station the size of a small moon?",
                      "retain, near the boundary: Who created Star Trek?"]


def test_a_malformed_showcase_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "showcase.json"
    path.write_text(json.dumps({"prompts": [{"kind": "rumour", "prompt": "x"}]}))
    with pytest.raises(ValueError, match="showcase.json: prompt 1 needs a kind"):
        examples.read_showcase(path)


def test_the_diff_reads_inline_and_escapes_the_model_text():
    spans = [("Harry Potter is", "removed"), ("In the <b>world</b>", "added"), (" of", None), (" magic", "removed")]
    out = render.diff_html(spans)
    assert "<del>Harry Potter is</del> <ins>In the &lt;b&gt;world&lt;/b&gt;</ins> of <del>magic</del>" in out
    assert "ADDED" not in out and "REMOVED" not in out  # no badge per chunk


def test_the_metrics_table_marks_the_best_value_of_each_row():
    rows = {"original": {"perplexity": 2.4, "unique_token_ratio": 0.7, "keywords": ["Harry Potter", "Rowling"]},
            "eco": {"perplexity": 6.7, "unique_token_ratio": 0.4, "keywords": []},
            "elm": {"perplexity": 2.4, "unique_token_ratio": float("nan"), "keywords": ["Harry Potter"]}}
    html = render.metrics_table(rows, ["original", "eco", "elm", "sku"], {"original": "Original"})
    body = html.split("<tbody>")[1]
    ppl, utr, kw = body.split("</tr>")[:3]
    assert ppl.count("★") == 2 and "6.7" in ppl and "6.7 ★" not in ppl  # a tie marks both
    assert utr.count("★") == 1 and "0.70 ★" in utr and "–" in utr  # NaN is shown as missing, never best
    assert kw.count("★") == 1 and "0 ★" in kw and "(Harry Potter, Rowling)" in kw
    assert body.count("no adapter") == 3  # sku has none
    same = render.metrics_table({"a": {"perplexity": 1, "unique_token_ratio": 1, "keywords": []}} | {
        "b": {"perplexity": 1, "unique_token_ratio": 1, "keywords": []}}, ["a", "b"], {})
    assert "★" not in same  # nothing stands out when every value is the same


def test_the_report_is_one_self_contained_page_with_four_answers_per_prompt():
    items = [{"kind": "forget", "prompt": "Who is <Harry>?", "texts": {v: f"{v} says" for v in report.COLUMNS},
              "metrics": {v: {"keywords": ["Harry Potter"] if v == "original" else []} for v in report.COLUMNS},
              "missing": [], "gate": {"score": 1.0, "flagged": True}},
             {"kind": "boundary", "prompt": "Who wrote it?", "texts": {"original": "Tolkien"}, "metrics": {},
              "missing": ["sku"], "gate": None}]
    meta = {"model": "m", "preset": "p", "preset_title": "P", "eco": "e", "negation": "1", "when": "now"}
    page = report.page(items, meta, lambda gate: "**p(forget) = 1.000** → ECO corrupts the prompt")
    doc = report.document(page, "title")
    assert doc.count('data-variant="') == 8 and "Who is &lt;Harry&gt;?" in doc
    assert "<strong>p(forget) = 1.000</strong>" in doc and "says Harry Potter" in doc
    assert "No SKU adapter" in doc and "waiting…" in doc  # the boundary card is still running
    assert "<style>" in doc and "src=" not in doc and "<link" not in doc  # nothing fetched


def test_a_refused_request_is_said_in_place_and_a_bug_stays_an_error():
    @in_place(3)
    def handler(prompt):
        if not prompt:
            raise ValueError("The prompt is empty: type a question or a sentence to continue.")
        if prompt == "bug":
            raise ZeroDivisionError("x")
        yield "a", "b", ""

    out = list(handler(""))
    assert len(out) == 1 and isinstance(out[0][0], type(gr.skip())) and isinstance(out[0][1], type(gr.skip()))
    assert out[0][2] == "⚠ The prompt is empty: type a question or a sentence to continue."
    assert list(handler("ok")) == [("a", "b", "")]
    with pytest.raises(gr.Error):
        list(handler("bug"))
