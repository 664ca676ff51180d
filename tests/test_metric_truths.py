"""Evaluation metrics against independent truths.

Two kinds of checks. Scripted ones give a metric a hand-built preset and an engine that returns
fixed scores (log-probs, gate scores, generations), then assert the exact per-example rows, the
aggregate, and what the metric asked the engine for (which records, which split, which ECO
settings, which batch size). Model ones compare a metric on the tiny model with the same number
computed by hand from direct forward passes (log-softmax, KL, greedy decoding, perplexity).
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import pytest

import engine.evaluation.metrics as M
from engine.data.presets import load_preset
from engine.data.records import MCQ, Passage, Probe, PromptRecord
from engine.eco.pipeline import ECOConfig
from engine.evaluation.metrics import EvalContext, get_metric
from engine.lm.models import format_chat

ALWAYS = ECOConfig(gate="always", selection="prompt", strength=100.0, dims=16)
NEVER = ECOConfig(gate="never", selection="prompt", strength=100.0, dims=16)


# ---------------------------------------------------------------------------- scripted engine

class ScriptedEngine:
    """Stands in for ECO: fixed choice scores per probe prefix, fixed log-probs per (prefix,
    continuation) pair, fixed gate scores per prompt (flagged above 0.5); records every request."""

    def __init__(self, choices=None, pairs=None, gate_scores=None):
        self.choices, self.pairs, self.gate_scores = choices or {}, pairs or {}, gate_scores or {}
        self.calls = []

    def probe_choice_logprobs(self, probes, config, batch_size=32):
        self.calls.append(("choices", list(probes), config, batch_size))
        return [list(self.choices[p.prefix]) for p in probes]

    def pair_logprobs(self, prefixes, conts, config, batch_size=32):
        self.calls.append(("pairs", list(zip(prefixes, conts)), config, batch_size))
        return [self.pairs[(p, c)] for p, c in zip(prefixes, conts)]

    def gate(self, prompts, config):
        self.calls.append(("gate", list(prompts), config))
        scores = [self.gate_scores[p] for p in prompts]
        return scores, [s > 0.5 for s in scores], 0.5


@dataclasses.dataclass
class ScriptedContext(EvalContext):
    scripted: object = None

    @property
    def engine(self):
        return self.scripted


@pytest.fixture(scope="module")
def star_wars():
    return load_preset("star_wars")


def prompt(id_, split, answer="an answer", paraphrase=None, perturbed=()):
    return PromptRecord(id=id_, prompt=f"Question {id_}?", answer=answer, split=split,
                        paraphrase=paraphrase, perturbed=tuple(perturbed))


def probe(id_, split="test"):
    return Probe(id=id_, prefix=f"Cloze {id_}:", answer=" yes", distractors=(" no", " maybe", " never"), split=split)


def test_unknown_metric_message_lists_every_metric_by_name():
    with pytest.raises(ValueError) as err:
        get_metric("accuracy_of_everything")
    assert str(err.value) == ("Unknown metric 'accuracy_of_everything'; known: "
                              + ", ".join(sorted(M.list_metrics())) + ".")
    assert ", forget_output_perplexity, forget_probe_accuracy, " in str(err.value)


# ---------------------------------------------------------------------------- cloze probes

PROBE_SCORES = {
    "Cloze fp1:": [-0.5, -1.0, -2.0, -3.0],   # answer best: right
    "Cloze fp2:": [-2.0, -0.1, -3.0, -4.0],   # first distractor best: wrong
    "Cloze fp3:": [-0.3, -1.0, -1.0, -1.0],   # a train probe
    "Cloze rp1:": [-3.0, -1.0, -2.0, -4.0],   # wrong
    "Cloze rp2:": [-0.7, -1.0, -2.0, -3.0],   # right
    "Cloze rp3:": [-0.2, -5.0, -5.0, -5.0],   # a train probe
    "Cloze xp1:": [-4.0, -3.0, -2.0, -1.0],   # wrong
    "Cloze xp2:": [-1.5, -2.5, -3.5, -4.5],   # right
}


@pytest.fixture()
def probe_preset(star_wars):
    return dataclasses.replace(star_wars, forget_probes=[probe("fp1"), probe("fp2"), probe("fp3", "train")],
                               retain_probes=[probe("rp1"), probe("rp2"), probe("rp3", "train")])


def test_probe_metrics_give_exact_rows_for_the_split_and_side_asked(tiny_lm, probe_preset):
    """Row i: the probe's id, whether its answer (choice 0) scored highest, and the answer's score."""
    engine = ScriptedEngine(choices=PROBE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="test", eco=ALWAYS, batch_size=7, scripted=engine)
    acc = M.forget_probe_accuracy(ctx)
    assert (acc.value, acc.n) == (0.5, 2)
    assert acc.rows == [{"id": "fp1", "correct": True, "answer_logprob": -0.5},
                        {"id": "fp2", "correct": False, "answer_logprob": -2.0}]
    assert M.forget_probe_logprob(ctx).value == pytest.approx((-0.5 - 2.0) / 2)
    retain = M.retain_probe_accuracy(ctx)
    assert (retain.value, retain.n) == (0.5, 2)
    assert retain.rows == [{"id": "rp1", "correct": False, "answer_logprob": -3.0},
                           {"id": "rp2", "correct": True, "answer_logprob": -0.7}]
    assert M.retain_probe_logprob(ctx).value == pytest.approx((-3.0 - 0.7) / 2)
    # each side is scored once, with the variant's ECO settings and the context's batch size
    assert engine.calls == [("choices", [probe("fp1"), probe("fp2")], ALWAYS, 7),
                            ("choices", [probe("rp1"), probe("rp2")], ALWAYS, 7)]


def test_train_split_probes_are_scored_on_their_own(tiny_lm, probe_preset):
    ctx = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="train", eco=None,
                          scripted=ScriptedEngine(choices=PROBE_SCORES))
    assert M.forget_probe_accuracy(ctx).rows == [{"id": "fp3", "correct": True, "answer_logprob": -0.3}]
    assert M.retain_probe_logprob(ctx).rows == [{"id": "rp3", "correct": True, "answer_logprob": -0.2}]
    assert ctx.scripted.calls[0][2] is None  # Original: no ECO settings


def test_external_probes_replace_only_the_side_they_are_given_for(tiny_lm, probe_preset):
    engine = ScriptedEngine(choices=PROBE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="test", eco=None, scripted=engine,
                          probes={"retain": [probe("xp1"), probe("xp2")]})
    acc = M.retain_probe_accuracy(ctx)
    assert (acc.value, acc.n) == (0.5, 2)
    assert acc.rows == [{"id": "xp1", "correct": False, "answer_logprob": -4.0},
                        {"id": "xp2", "correct": True, "answer_logprob": -1.5}]
    assert M.forget_probe_accuracy(ctx).rows == [{"id": "fp1", "correct": True, "answer_logprob": -0.5},
                                                 {"id": "fp2", "correct": False, "answer_logprob": -2.0}]
    fresh = ScriptedContext(lm=tiny_lm, preset=probe_preset, split="test", eco=None,
                            scripted=ScriptedEngine(choices=PROBE_SCORES),
                            probes={"retain": [probe("xp1"), probe("xp2")]})
    lp = M.retain_probe_logprob(fresh)
    assert lp.value == pytest.approx((-4.0 - 1.5) / 2) and [r["id"] for r in lp.rows] == ["xp1", "xp2"]


# ---------------------------------------------------------------------------- multiple choice

def mcq_probe(q: MCQ) -> Probe:
    letters = [" A", " B", " C", " D"]
    prefix = ("The following are multiple choice questions (with answers) about star wars.\n\n"
              f"{q.question}\n" + "\n".join(f"{l.strip()}. {c}" for l, c in zip(letters, q.choices)) + "\nAnswer:")
    return Probe(id=q.id, prefix=prefix, answer=letters[q.answer],
                 distractors=tuple(l for i, l in enumerate(letters) if i != q.answer))


MCQS = [MCQ(id="q1", question="Who trained Luke?", choices=("Han", "Leia", "Yoda", "Jabba"), answer=2),
        MCQ(id="q2", question="What is Tatooine?", choices=("A planet", "A ship", "A droid", "A moon"), answer=0),
        MCQ(id="q3", question="Who is Vader's son?", choices=("Luke", "Han", "Lando", "Ben"), answer=0, split="train")]


def mcq_engine():
    p1, p2, p3 = (mcq_probe(q) for q in MCQS)
    return ScriptedEngine(choices={p1.prefix: [-0.5, -1.0, -2.0, -3.0],    # right
                                   p2.prefix: [-2.0, -0.1, -3.0, -4.0],    # second choice best: wrong
                                   p3.prefix: [-0.1, -2.0, -2.0, -2.0]})


def test_mcq_accuracy_scores_the_reference_prompt_with_letter_choices(tiny_lm, star_wars):
    """Each test-split question becomes a probe: the reference MCQ prompt about the preset's title
    in lower case, the right letter first, the other three letters after it."""
    preset = dataclasses.replace(star_wars, forget_mcq=MCQS)
    engine = mcq_engine()
    eco = ECOConfig(gate="always", selection="prompt", strength=5.0)
    ctx = ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=eco, batch_size=3, scripted=engine)
    mv = M.forget_mcq_accuracy(ctx)
    assert (mv.value, mv.n) == (0.5, 2)
    assert mv.rows == [{"id": "q1", "correct": True}, {"id": "q2", "correct": False}]
    assert engine.calls == [("choices", [mcq_probe(MCQS[0]), mcq_probe(MCQS[1])], eco, 3)]
    assert engine.calls[0][1][0].answer == " C" and engine.calls[0][1][0].distractors == (" A", " B", " D")


def test_mcq_accuracy_on_the_retain_side_and_the_train_split(tiny_lm, star_wars):
    preset = dataclasses.replace(star_wars, retain_mcq=MCQS)
    ctx = ScriptedContext(lm=tiny_lm, preset=preset, split="train", eco=None, scripted=mcq_engine())
    mv = M.retain_mcq_accuracy(ctx)
    assert (mv.value, mv.n, mv.rows) == (1.0, 1, [{"id": "q3", "correct": True}])
    assert ctx.scripted.calls == [("choices", [mcq_probe(MCQS[2])], None, 32)]


def test_mcq_under_ner_selection_corrupts_all_but_the_last_token_instead(tiny_lm, star_wars):
    """The reference has no entities to find in an MCQ prompt: NER selection becomes all_but_last,
    every other ECO setting kept; other selections are passed on unchanged."""
    preset = dataclasses.replace(star_wars, forget_mcq=MCQS)
    ner = ECOConfig(gate="always", selection="ner", strength=7.0, seed=3, entity_types=("PER",))
    engine = mcq_engine()
    M.forget_mcq_accuracy(ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=ner, scripted=engine))
    assert engine.calls[0][2] == ECOConfig(gate="always", selection="all_but_last", strength=7.0, seed=3,
                                           entity_types=("PER",))
    for selection in ("prompt", "all_but_last"):
        eco = ECOConfig(gate="always", selection=selection, strength=7.0)
        engine = mcq_engine()
        M.forget_mcq_accuracy(ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=eco, scripted=engine))
        assert engine.calls[0][2] == eco


# ---------------------------------------------------------------------------- retain perplexity

def test_retain_perplexity_splits_each_passage_at_its_first_space(tiny_lm, star_wars):
    """The first space-separated piece is the context and the rest, with its space, the scored
    continuation: context + continuation is the whole passage. Perplexity = exp(-mean log-prob)."""
    texts = {"p1": "Alpha beta gamma delta", "p2": "One\ttwo three  four"}
    preset = dataclasses.replace(star_wars, retain_corpus=[Passage(k, v) for k, v in texts.items()])
    pairs = [("Alpha", " beta gamma delta"), ("One\ttwo", " three  four")]
    engine = ScriptedEngine(pairs={pairs[0]: -2.0, pairs[1]: -3.0})
    ctx = ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=ALWAYS, batch_size=5, scripted=engine)
    mv = M.retain_perplexity(ctx)
    assert engine.calls == [("pairs", pairs, ALWAYS, 5)]
    assert all(h + c == texts[k] for (h, c), k in zip(pairs, texts))
    assert mv.n == 2 and mv.rows == [{"id": "p1", "perplexity": pytest.approx(math.exp(2.0))},
                                     {"id": "p2", "perplexity": pytest.approx(math.exp(3.0))}]
    assert mv.value == pytest.approx(math.exp(2.5))


# ---------------------------------------------------------------------------- the gate

@pytest.fixture()
def gate_preset(star_wars):
    return dataclasses.replace(star_wars, forget_prompts=[prompt("f1", "test"), prompt("f2", "test"),
                                                          prompt("f3", "train")],
                               retain_prompts=[prompt("r1", "test"), prompt("r2", "test"), prompt("r3", "test"),
                                               prompt("r4", "train"), prompt("r5", "train")])


GATE_SCORES = {"Question f1?": 0.9, "Question f2?": 0.2, "Question f3?": 0.95, "Question r1?": 0.7,
               "Question r2?": 0.1, "Question r3?": 0.3, "Question r4?": 0.4, "Question r5?": 0.2}


def test_gate_metrics_report_each_prompts_score_and_decision(tiny_lm, gate_preset):
    engine = ScriptedEngine(gate_scores=GATE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=gate_preset, split="test", eco=ALWAYS, scripted=engine)
    recall = M.forget_recall(ctx)
    assert (recall.value, recall.n) == (0.5, 2)
    assert recall.rows == [{"id": "f1", "score": 0.9, "flagged": True}, {"id": "f2", "score": 0.2, "flagged": False}]
    fpr = M.retain_fpr(ctx)
    assert (fpr.value, fpr.n) == (pytest.approx(1 / 3), 3)
    assert fpr.rows == [{"id": "r1", "score": 0.7, "flagged": True}, {"id": "r2", "score": 0.1, "flagged": False},
                        {"id": "r3", "score": 0.3, "flagged": False}]
    assert engine.calls == [("gate", ["Question f1?", "Question f2?"], ALWAYS),
                            ("gate", ["Question r1?", "Question r2?", "Question r3?"], ALWAYS)]


def test_gate_rate_over_a_single_prompt_is_its_own_decision(tiny_lm, gate_preset):
    ctx = ScriptedContext(lm=tiny_lm, preset=gate_preset, split="train", eco=ALWAYS,
                          scripted=ScriptedEngine(gate_scores=GATE_SCORES))
    mv = M.forget_recall(ctx)
    assert (mv.value, mv.n, mv.rows) == (1.0, 1, [{"id": "f3", "score": 0.95, "flagged": True}])
    assert M.retain_fpr(ctx).rows == [{"id": "r4", "score": 0.4, "flagged": False},
                                      {"id": "r5", "score": 0.2, "flagged": False}]


def test_original_flags_nothing_and_asks_no_gate(tiny_lm, gate_preset):
    engine = ScriptedEngine(gate_scores=GATE_SCORES)
    ctx = ScriptedContext(lm=tiny_lm, preset=gate_preset, split="test", eco=None, scripted=engine)
    mv = M.forget_recall(ctx)
    assert (mv.value, mv.n, mv.rows) == (0.0, 2, [{"id": "f1", "flagged": False}, {"id": "f2", "flagged": False}])
    assert M.retain_fpr(ctx).n == 3 and engine.calls == []


# ---------------------------------------------------------------------------- truth ratio

def truth_preset(star_wars):
    return dataclasses.replace(star_wars, forget_prompts=[
        prompt("f1", "test", paraphrase="para one", perturbed=["wrong a", "wrong b"]),
        prompt("f2", "test", paraphrase="para two", perturbed=["wrong c", "wrong d", "wrong e"]),
        prompt("f3", "test", paraphrase="para three"),  # no perturbed answers: skipped
        prompt("f4", "test", perturbed=["wrong f"]),  # no paraphrase: skipped
        prompt("f5", "train", paraphrase="para five", perturbed=["wrong g"]),
    ])


def test_truth_ratio_is_the_geometric_mean_perturbed_over_paraphrase_probability(tiny_lm, star_wars):
    """R = exp(mean log P(perturbed) - log P(paraphrase)), each answer scored after the chat-formatted
    question with a leading space; the metric is the mean of min(R, 1/R)."""
    q1, q2 = (format_chat(tiny_lm.tokenizer, f"Question {i}?") for i in ("f1", "f2"))
    lp = {(q1, " para one"): -2.0, (q1, " wrong a"): -1.0, (q1, " wrong b"): -1.5,
          (q2, " para two"): -0.5, (q2, " wrong c"): -1.0, (q2, " wrong d"): -2.0, (q2, " wrong e"): -3.0}
    engine = ScriptedEngine(pairs=lp)
    ctx = ScriptedContext(lm=tiny_lm, preset=truth_preset(star_wars), split="test", eco=ALWAYS, batch_size=4,
                          scripted=engine)
    mv = M.truth_ratio(ctx)
    r1, r2 = math.exp(-1.25 + 2.0), math.exp(-2.0 + 0.5)
    assert r1 > 1 > r2
    assert mv.n == 2 and mv.rows == [{"id": "f1", "truth_ratio": pytest.approx(r1)},
                                     {"id": "f2", "truth_ratio": pytest.approx(r2)}]
    assert mv.value == pytest.approx((1 / r1 + r2) / 2)
    assert engine.calls == [("pairs", list(lp), ALWAYS, 4)]


def test_truth_ratio_without_usable_questions_is_nan_and_scores_nothing(tiny_lm, star_wars):
    preset = dataclasses.replace(star_wars, forget_prompts=[prompt("f3", "test", paraphrase="para three"),
                                                            prompt("f4", "test", perturbed=["wrong f"])])
    engine = ScriptedEngine()
    mv = M.truth_ratio(ScriptedContext(lm=tiny_lm, preset=preset, split="test", eco=None, scripted=engine))
    assert math.isnan(mv.value) and mv.n == 0 and mv.rows == []
    assert engine.calls == []


def test_truth_ratio_on_the_train_split_uses_only_train_questions(tiny_lm, star_wars):
    q5 = format_chat(tiny_lm.tokenizer, "Question f5?")
    engine = ScriptedEngine(pairs={(q5, " para five"): -1.0, (q5, " wrong g"): -3.0})
    mv = M.truth_ratio(ScriptedContext(lm=tiny_lm, preset=truth_preset(star_wars), split="train", eco=None,
                                       scripted=engine))
    assert mv.rows == [{"id": "f5", "truth_ratio": pytest.approx(math.exp(-2.0))}]
    assert mv.value == pytest.approx(math.exp(-2.0))


def test_forget_quality_of_an_empty_sample_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(M.forget_quality([], [0.5, 0.6]))
        assert math.isnan(M.forget_quality([0.5, 0.6], []))
