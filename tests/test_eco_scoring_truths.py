"""ECO's teacher-forced scoring against a recorder around the scorer: the batch size, the corrupted
positions (prefix only, or prefix and answer), prefixes the gate lets through, probes split back by their
number of choices, and the summary of no probes."""
from __future__ import annotations

import math

import pytest

from engine.data.records import Probe
from engine.eco import pipeline as P
from engine.eco.pipeline import ECO, ECOConfig, probe_summary

from tests.test_eco_pipeline_truths import (  # noqa: F401 (fixtures and helpers)
    tok, StubGate,
)


# ---------------------------------------------------------------------------- teacher-forced scoring

@pytest.fixture()
def spy(monkeypatch):
    calls = []
    real = P.continuation_logprobs

    def recording(model, tokenizer, prefixes, conts, batch_size="unset", embed=None, positions=None):
        calls.append({"batch_size": batch_size, "positions": positions})
        return real(model, tokenizer, prefixes, conts, 32 if batch_size == "unset" else batch_size, embed,
                    positions)

    monkeypatch.setattr(P, "continuation_logprobs", recording)
    return calls


PREFIXES = ["Harry Potter went to", "Harry Potter went to", "The owl flew"]
CONTS = [" Hogwarts", " London", " home"]


def test_scoring_honours_the_batch_size(tiny_lm, spy):
    eco = ECO(tiny_lm)
    eco.pair_logprobs(PREFIXES, CONTS, None, batch_size=2)
    eco.pair_logprobs(PREFIXES, CONTS, ECOConfig(gate="never"), batch_size=3)
    assert [c["batch_size"] for c in spy] == [2, 3]


def test_scoring_corrupts_every_prefix_token_of_the_raw_text(tiny_lm, tok, spy):
    """Probes are scored on raw text: with selection=prompt every token of the prefix is chosen,
    and the prefix is the whole of what is selected over (the answer is never corrupted)."""
    ECO(tiny_lm).pair_logprobs(PREFIXES, CONTS, ECOConfig(gate="always", selection="prompt", strength=5.0))
    expected = [list(range(len(tok(p)["input_ids"]))) for p in PREFIXES]
    assert spy[0]["positions"] == expected


def test_reference_scoring_selects_over_prefix_and_answer(tiny_lm, tok, spy):
    """corrupt_answer: selection runs over the raw text prefix + continuation, so all_but_last picks
    every token of that joined text but its last."""
    cfg = ECOConfig(gate="always", selection="all_but_last", corrupt_answer=True, strength=5.0)
    ECO(tiny_lm).pair_logprobs(PREFIXES, CONTS, cfg)
    expected = [list(range(len(tok(p + c)["input_ids"]) - 1)) for p, c in zip(PREFIXES, CONTS)]
    assert spy[0]["positions"] == expected


def test_a_prefix_the_gate_lets_through_gets_no_corrupted_position(tiny_lm, tok, spy):
    gate = StubGate({"Harry Potter went to": 0.9, "The owl flew": 0.1})
    ECO(tiny_lm, gate).pair_logprobs(PREFIXES, CONTS, ECOConfig(gate="classifier", selection="prompt"))
    n = len(tok("Harry Potter went to")["input_ids"])
    assert spy[0]["positions"] == [list(range(n)), list(range(n)), []]
    assert gate.seen == [["Harry Potter went to", "The owl flew"]]  # each distinct prefix scored once


def test_choice_scores_are_split_back_per_probe(tiny_lm, spy):
    """Probes with 2, 3 and 2 choices: each probe's row equals the same probe scored alone."""
    probes = [Probe("a", "Harry Potter went to", " Hogwarts", (" London",)),
              Probe("b", "The owl flew", " home", (" away", " north")),
              Probe("c", "Hermione read a", " book", (" map",))]
    eco = ECO(tiny_lm)
    rows = eco.probe_choice_logprobs(probes, None, batch_size=4)
    assert spy[0]["batch_size"] == 4
    assert [len(r) for r in rows] == [2, 3, 2]
    for probe, row in zip(probes, rows):
        assert row == pytest.approx(eco.probe_choice_logprobs([probe], None)[0], abs=1e-5)


def test_an_empty_probe_summary_names_its_three_fields():
    out = probe_summary([])
    assert list(out) == ["accuracy", "logprob", "n"]
    assert math.isnan(out["accuracy"]) and math.isnan(out["logprob"]) and out["n"] == 0
