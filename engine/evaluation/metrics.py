"""Metrics: small functions registered by name, each computing one number for one variant.

A metric takes an `EvalContext` (model, ECO settings or None for Original, preset, split) and
returns a `MetricValue` (value, n, per-example rows). Names follow the field where one exists
(open-unlearning / TOFU / ECO). Teacher-forced metrics score a batch at once; nothing here
generates text. The runner (evaluation.py) loops over variants x metrics.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.presets import Preset
from ..data.records import Probe
from ..eco.pipeline import ECO, ECOConfig, probe_summary
from ..lm.models import LoadedModel, format_chat

LETTERS = (" A", " B", " C", " D")


@dataclass
class EvalContext:
    lm: LoadedModel
    preset: Preset
    split: str
    eco: ECOConfig | None  # None = Original
    classifier: object | None = None
    batch_size: int = 32
    probes: dict[str, list[Probe]] | None = None  # optional external probes per side
    cache: dict = field(default_factory=dict)  # shared by the metrics of one variant
    weights: bool = False  # the variant changes weights (an adapter or a full unlearned model)
    base: Callable = contextlib.nullcontext  # a scope running the base model (reference terms)
    base_lm: LoadedModel | None = None  # the base model when the variant is a separate full model

    @property
    def engine(self) -> ECO:
        return ECO(self.lm, self.classifier)


@dataclass
class MetricValue:
    value: float
    n: int
    rows: list[dict] = field(default_factory=list)


Metric = Callable[[EvalContext], MetricValue]


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; known: {', '.join(sorted(METRICS))}.")
    return METRICS[name]


def list_metrics() -> dict[str, str]:
    """Every metric's name and its one-line definition."""
    return {n: METRIC_TABLE[n][1] for n in sorted(METRIC_TABLE)}


# ---------------------------------------------------------------------------- probes

def _probes(ctx: EvalContext, side: str) -> list[Probe]:
    if ctx.probes and side in ctx.probes:
        return ctx.probes[side]
    return ctx.preset.probes(side, ctx.split)


def _probe_scores(ctx: EvalContext, side: str) -> list[list[float]]:
    key = ("probes", side)
    if key not in ctx.cache:
        ctx.cache[key] = ctx.engine.probe_choice_logprobs(_probes(ctx, side), ctx.eco, ctx.batch_size)
    return ctx.cache[key]


def _probe_metric(ctx: EvalContext, side: str, field_: str) -> MetricValue:
    scores = _probe_scores(ctx, side)
    s = probe_summary(scores)
    rows = [{"id": p.id, "correct": max(range(4), key=sc.__getitem__) == 0, "answer_logprob": sc[0]}
            for p, sc in zip(_probes(ctx, side), scores)]
    return MetricValue(s[field_], s["n"], rows)


def forget_probe_accuracy(ctx: EvalContext) -> MetricValue:
    return _probe_metric(ctx, "forget", "accuracy")


def retain_probe_accuracy(ctx: EvalContext) -> MetricValue:
    return _probe_metric(ctx, "retain", "accuracy")


def forget_probe_logprob(ctx: EvalContext) -> MetricValue:
    return _probe_metric(ctx, "forget", "logprob")


def retain_probe_logprob(ctx: EvalContext) -> MetricValue:
    return _probe_metric(ctx, "retain", "logprob")


# ---------------------------------------------------------------------------- multiple choice

def mcq_prompt(subject: str, question: str, choices) -> str:
    body = "\n".join(f"{l.strip()}. {c}" for l, c in zip(LETTERS, choices))
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n{question}\n{body}\nAnswer:"


def _mcq_metric(ctx: EvalContext, side: str) -> MetricValue:
    qs = ctx.preset.mcqs(side, ctx.split)
    if not qs:
        return MetricValue(float("nan"), 0)
    probes = [Probe(id=q.id, prefix=mcq_prompt(ctx.preset.title.lower(), q.question, q.choices),
                    answer=LETTERS[q.answer], distractors=tuple(l for i, l in enumerate(LETTERS) if i != q.answer))
              for q in qs]
    eco = ctx.eco
    if eco is not None and eco.selection == "ner":  # the reference corrupts all but the last token for MCQ
        eco = ECOConfig.from_dict({**eco.to_dict(), "selection": "all_but_last"})
    scores = ctx.engine.probe_choice_logprobs(probes, eco, ctx.batch_size)
    rows = [{"id": q.id, "correct": max(range(4), key=s.__getitem__) == 0} for q, s in zip(qs, scores)]
    return MetricValue(sum(r["correct"] for r in rows) / len(rows), len(rows), rows)


def forget_mcq_accuracy(ctx: EvalContext) -> MetricValue:
    return _mcq_metric(ctx, "forget")


def retain_mcq_accuracy(ctx: EvalContext) -> MetricValue:
    return _mcq_metric(ctx, "retain")


# ---------------------------------------------------------------------------- fluency and specificity

def retain_perplexity(ctx: EvalContext) -> MetricValue:
    passages = ctx.preset.retain_corpus
    heads, tails = zip(*[(t.split(" ", 1)[0], " " + t.split(" ", 1)[1]) for t in (p.text for p in passages)])
    lp = _maybe_eco_logprobs(ctx, list(heads), list(tails))
    rows = [{"id": p.id, "perplexity": math.exp(-v)} for p, v in zip(passages, lp)]
    return MetricValue(math.exp(-sum(lp) / len(lp)), len(lp), rows)


def _maybe_eco_logprobs(ctx: EvalContext, prefixes: list[str], conts: list[str]) -> list[float]:
    """Mean log-probs of continuations; under ECO the whole text is gated and its prefix corrupted."""
    return ctx.engine.pair_logprobs(prefixes, conts, ctx.eco, ctx.batch_size)


def _last_logprobs(ctx: EvalContext, prompt: str, eco: ECOConfig | None, lm: LoadedModel | None = None) -> torch.Tensor:
    lm = lm or ctx.lm
    if eco is None:
        ids = lm.tokenizer(format_chat(lm.tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
        inputs = {"input_ids": ids["input_ids"].to(lm.device)}
    else:
        plan = ctx.engine.plan(prompt, eco)
        inputs = {"inputs_embeds": plan.inputs_embeds} if plan.flagged else {"input_ids": plan.input_ids}
    with torch.inference_mode():
        logits = lm.model(**inputs).logits
    return torch.log_softmax(logits[0, -1].float(), -1)


def retain_kl(ctx: EvalContext) -> MetricValue:
    prompts = ctx.preset.prompts("retain", ctx.split)
    rows = []
    for r in prompts:
        with ctx.base():
            p = _last_logprobs(ctx, r.prompt, None, ctx.base_lm)
        q = p if ctx.eco is None and not ctx.weights else _last_logprobs(ctx, r.prompt, ctx.eco)
        rows.append({"id": r.id, "kl": float((p.exp() * (p - q)).sum())})
    return MetricValue(sum(x["kl"] for x in rows) / max(len(rows), 1), len(rows), rows)


# ---------------------------------------------------------------------------- the gate

def _gate(ctx: EvalContext, side: str) -> MetricValue:
    prompts = ctx.preset.prompts(side, ctx.split)
    if ctx.eco is None:  # Original never corrupts anything
        return MetricValue(0.0, len(prompts), [{"id": r.id, "flagged": False} for r in prompts])
    scores, flags, _ = ctx.engine.gate([r.prompt for r in prompts], ctx.eco)
    rows = [{"id": r.id, "score": s, "flagged": f} for r, s, f in zip(prompts, scores, flags)]
    return MetricValue(sum(flags) / max(len(flags), 1), len(flags), rows)


def forget_recall(ctx: EvalContext) -> MetricValue:
    return _gate(ctx, "forget")


def retain_fpr(ctx: EvalContext) -> MetricValue:
    return _gate(ctx, "retain")


# ---------------------------------------------------------------------------- TOFU truth ratio

def _truth_ratios(ctx: EvalContext) -> tuple[list, list[float]]:
    key = "truth_ratio"
    if key not in ctx.cache:
        rows = [r for r in ctx.preset.prompts("forget", ctx.split) if r.paraphrase and r.perturbed]
        prefixes, conts, spans = [], [], []
        for r in rows:
            q = format_chat(ctx.lm.tokenizer, r.prompt)
            start = len(conts)
            prefixes += [q] * (1 + len(r.perturbed))
            conts += [" " + r.paraphrase, *(" " + p for p in r.perturbed)]
            spans.append((start, len(conts)))
        lp = _maybe_eco_logprobs(ctx, prefixes, conts) if rows else []
        ratios = [math.exp(sum(lp[a + 1:b]) / (b - a - 1) - lp[a]) for a, b in spans]
        ctx.cache[key] = (rows, ratios)
    return ctx.cache[key]


def truth_ratio(ctx: EvalContext) -> MetricValue:
    rows, ratios = _truth_ratios(ctx)
    if not rows:
        return MetricValue(float("nan"), 0)
    folded = [min(r, 1 / r) for r in ratios]
    return MetricValue(sum(folded) / len(folded), len(folded),
                       [{"id": r.id, "truth_ratio": v} for r, v in zip(rows, ratios)])


def forget_quality(ratios: list[float], reference: list[float]) -> float:
    """TOFU forget quality: KS two-sample test p-value between truth-ratio distributions."""
    from scipy.stats import ks_2samp

    if not ratios or not reference:
        return float("nan")
    return float(ks_2samp(ratios, reference).pvalue)


# ---------------------------------------------------------------------------- generated text

def unique_token_ratio(tokenizer, text: str) -> float:
    """Distinct LLM tokens / tokens in a generation (low = repetitive or degenerate)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(set(ids)) / len(ids) if ids else float("nan")


def keyword_mentions(text: str, keywords) -> list[str]:
    """The preset's forget keywords named in a text (case-insensitive, whole words)."""
    import re

    return [k for k in keywords if re.search(r"(?<!\w)" + re.escape(k) + r"(?!\w)", text, re.IGNORECASE)]


def output_perplexity(lm: LoadedModel, prompts: list[str], outputs: list[str], batch_size: int = 16,
                      chat: bool = True) -> list[float]:
    """exp of the mean token NLL of each output given its prompt under the current weights
    (call it with adapters off to score under the base model, ELM's 'seamlessness')."""
    from ..lm.scoring import continuation_logprobs

    keep = [i for i, o in enumerate(outputs) if o.strip()]
    prefixes = [format_chat(lm.tokenizer, prompts[i]) if chat else prompts[i] for i in keep]
    lp = continuation_logprobs(lm.model, lm.tokenizer, prefixes, [outputs[i] for i in keep], batch_size) if keep else []
    out = [float("nan")] * len(outputs)
    for i, v in zip(keep, lp):
        out[i] = math.exp(-v)
    return out


def output_metrics(lm: LoadedModel, prompt: str, texts: list[str], chat: bool, forget_keywords) -> list[dict]:
    """Quick metrics under each Compare column: perplexity under the current weights (call it with the
    adapters off for the base model's), unique-token ratio, forget keywords named."""
    # one answer at a time: four long answers in one batch would hold four (T, vocab) logit tables
    ppl = output_perplexity(lm, [prompt] * len(texts), texts, batch_size=1, chat=chat)
    clean = lambda x: None if x != x else x  # noqa: E731 - NaN (empty output) becomes null in JSON
    return [{"perplexity": clean(p), "unique_token_ratio": clean(unique_token_ratio(lm.tokenizer, t)),
             "keywords": keyword_mentions(t, forget_keywords)} for p, t in zip(ppl, texts)]


def token_diff(reference: str, text: str) -> list[tuple[str, str | None]]:
    """Word-level diff of `text` against `reference`: (piece, "same" | "added") pairs, plus
    ("piece", "removed") for reference words that are gone; ready for gr.HighlightedText."""
    import difflib
    import re

    a, b = re.findall(r"\s*\S+", reference), re.findall(r"\s*\S+", text)
    out: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("".join(b[j1:j2]), None))
            continue
        if op in ("delete", "replace"):
            out.append(("".join(a[i1:i2]), "removed"))
        if op in ("insert", "replace"):
            out.append(("".join(b[j1:j2]), "added"))
    return out


# ---------------------------------------------------------------------------- generation metrics

GEN_TOKENS = 48  # greedy new tokens per prompt for the generation metrics


def generate_batch(ctx: EvalContext, prompts: list[str], max_new_tokens: int = GEN_TOKENS) -> list[str]:
    """Greedy answers to chat prompts, in batches of ctx.batch_size through the one decoding routine,
    under the variant's scope; ECO prompts go in as (maybe corrupted) embeddings, each with its own
    noise, so an answer does not depend on the batch it lands in."""
    from ..lm.generation import GenerationConfig, decode, encode_prompt

    lm, out = ctx.lm, []
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    for start in range(0, len(prompts), ctx.batch_size):
        chunk = prompts[start:start + ctx.batch_size]
        if ctx.eco is None:
            rows = [encode_prompt(lm.tokenizer, p, device=lm.device) for p in chunk]  # chat template on
        else:
            plans = [ctx.engine.plan(p, ctx.eco) for p in chunk]
            rows = [{"inputs_embeds": pl.inputs_embeds} if pl.flagged else {"input_ids": pl.input_ids}
                    for pl in plans]
        texts = []
        for texts in decode(lm.model, lm.tokenizer, config, rows):
            pass
        out += [t.strip() for t in texts]
    return out


def _generations(ctx: EvalContext, side: str) -> tuple[list, list[str]]:
    key = ("generations", side)
    if key not in ctx.cache:
        rows = ctx.preset.prompts(side, ctx.split)
        ctx.cache[key] = (rows, generate_batch(ctx, [r.prompt for r in rows]))
    return ctx.cache[key]


def _rouge_metric(ctx: EvalContext, side: str) -> MetricValue:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows, outs = _generations(ctx, side)
    vals = [{"id": r.id, "rouge_l_recall": scorer.score(r.answer, o)["rougeL"].recall, "output": o}
            for r, o in zip(rows, outs)]
    return MetricValue(sum(v["rouge_l_recall"] for v in vals) / max(len(vals), 1), len(vals), vals)


def forget_rouge_l_recall(ctx: EvalContext) -> MetricValue:
    return _rouge_metric(ctx, "forget")


def retain_rouge_l_recall(ctx: EvalContext) -> MetricValue:
    return _rouge_metric(ctx, "retain")


def keyword_leak_rate(ctx: EvalContext) -> MetricValue:
    rows, outs = _generations(ctx, "forget")
    vals = [{"id": r.id, "keywords": keyword_mentions(o, ctx.preset.forget_keywords), "output": o}
            for r, o in zip(rows, outs)]
    return MetricValue(sum(bool(v["keywords"]) for v in vals) / max(len(vals), 1), len(vals), vals)


def forget_unique_token_ratio(ctx: EvalContext) -> MetricValue:
    rows, outs = _generations(ctx, "forget")
    vals = [{"id": r.id, "unique_token_ratio": unique_token_ratio(ctx.lm.tokenizer, o)} for r, o in zip(rows, outs)]
    ok = [v["unique_token_ratio"] for v in vals if v["unique_token_ratio"] == v["unique_token_ratio"]]
    return MetricValue(sum(ok) / max(len(ok), 1), len(ok), vals)


def forget_output_perplexity(ctx: EvalContext) -> MetricValue:
    rows, outs = _generations(ctx, "forget")
    with ctx.base():
        ppl = output_perplexity(ctx.base_lm or ctx.lm, [r.prompt for r in rows], outs, ctx.batch_size)
    ok = [p for p in ppl if p == p]
    mean = math.exp(sum(math.log(p) for p in ok) / len(ok)) if ok else float("nan")  # geometric mean
    return MetricValue(mean, len(ok), [{"id": r.id, "perplexity": p} for r, p in zip(rows, ppl)])


# ---------------------------------------------------------------------------- the registry

# name -> (function, one-line definition); a plain table, so each metric is an ordinary function
METRIC_TABLE: dict[str, tuple[Metric, str]] = {
    "forget_probe_accuracy": (forget_probe_accuracy,
        "Share of forget cloze probes whose answer has the highest mean token log-prob of the 4 choices."),
    "retain_probe_accuracy": (retain_probe_accuracy,
        "Share of retain cloze probes whose answer has the highest mean token log-prob of the 4 choices."),
    "forget_probe_logprob": (forget_probe_logprob, "Mean token log-prob of the answer of forget cloze probes."),
    "retain_probe_logprob": (retain_probe_logprob, "Mean token log-prob of the answer of retain cloze probes."),
    "forget_mcq_accuracy": (forget_mcq_accuracy,
        "Share of forget multiple-choice questions answered right by the ' A'..' D' logit after 'Answer:'."),
    "retain_mcq_accuracy": (retain_mcq_accuracy,
        "Share of retain multiple-choice questions answered right by the ' A'..' D' logit after 'Answer:'."),
    "retain_perplexity": (retain_perplexity,
        "exp of the mean token NLL of retain-corpus passages (first word as context) under the variant."),
    "retain_kl": (retain_kl,
        "Mean KL(Original || variant) of the next-token distribution after each retain prompt (specificity)."),
    "forget_recall": (forget_recall,
        "Share of forget prompts the variant's gate flags (ECO's classifier; 0 for weight-space variants)."),
    "retain_fpr": (retain_fpr, "Share of retain prompts the variant's gate flags by mistake (false-positive rate)."),
    "truth_ratio": (truth_ratio,
        "TOFU truth ratio on forget questions: mean of min(R, 1/R), R = GM P(perturbed) / P(paraphrase)."),
    "forget_rouge_l_recall": (forget_rouge_l_recall,
        "ROUGE-L recall of greedy answers to forget prompts against the preset's reference answers."),
    "retain_rouge_l_recall": (retain_rouge_l_recall,
        "ROUGE-L recall of greedy answers to retain prompts against the preset's reference answers."),
    "keyword_leak_rate": (keyword_leak_rate,
        "Share of greedy answers to forget prompts that still name one of the preset's forget keywords."),
    "forget_unique_token_ratio": (forget_unique_token_ratio,
        "Mean distinct-token ratio of greedy answers to forget prompts (low = repetitive, degenerate)."),
    "forget_output_perplexity": (forget_output_perplexity,
        "Perplexity of greedy answers to forget prompts under the base model (fluency, 'seamlessness')."),
}
METRICS: dict[str, Metric] = {n: fn for n, (fn, _) in METRIC_TABLE.items()}
