"""ECO: gate -> select -> corrupt the prompt embeddings -> generate or score with inputs_embeds.

Stateless per call and hook-free: the prompt is embedded with the model's own embedding table,
the selected positions of a gated prompt are corrupted with a per-request `torch.Generator`,
and the result is passed as `inputs_embeds`. Generated tokens are embedded normally by
`generate`, exactly as the reference's KV-cache behaviour. Nothing is left on the shared model,
so two users with different settings can never see each other's corruption.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING

import torch

from .. import checks
from ..lm.scoring import continuation_logprobs
from .corruptions import USES_DIMS, get_corruption
from .selection import FALLBACKS, MODES, Selection, TokenSelector

if TYPE_CHECKING:  # types only: the pipeline needs no classifier, model loader or preset code to run
    from ..data.records import Probe
    from ..lm.models import LoadedModel
    from .classifier import PromptClassifier

GATES = ("classifier", "always", "never")
UNITS = ("absolute", "std")


@dataclass
class ECOConfig:
    corruption: str = field(default="rand_noise_first_n", metadata={"help": "Corruption function."})
    dims: int = field(default=0, metadata={"help": "Embedding coordinates touched (k); 0 = all of them.", "min": 0})
    # the default is harry_potter's calibrated setting (presets carry their own in preset.yaml `eco:`)
    strength: float = field(default=30.0, metadata={"help": "Noise std / shift (sigma).", "min": 0.0})
    strength_unit: str = field(default="std", metadata={"help": "absolute, or std = multiples of the embedding matrix's std.", "choices": UNITS})
    selection: str = field(default="prompt", metadata={"help": "Which tokens to corrupt.", "choices": MODES})
    entity_types: tuple[str, ...] = field(default=(), metadata={"help": "NER types to select (empty = all)."})
    fallback: str = field(default="prompt", metadata={"help": "When NER finds nothing.", "choices": FALLBACKS})
    gate: str = field(default="classifier", metadata={"help": "classifier, always or never corrupt.", "choices": GATES})
    threshold: float | None = field(default=None, metadata={"help": "Gate threshold (empty = calibrated)."})
    seed: int = field(default=0, metadata={"help": "Seed of the corruption noise."})
    corrupt_answer: bool = field(default=False, metadata={"help": "Reference scoring: corrupt answer tokens too."})
    token_model: str | None = field(default=None, metadata={"help": "HF token-classification model for selection=token_model."})

    def validate(self, hidden_size: int) -> "ECOConfig":
        get_corruption(self.corruption)  # unknown names list the known ones
        checks.seed(self.seed, "ECO seed")
        checks.integer("dims", self.dims, 0, 10**7)
        checks.threshold(self.threshold)
        s = float(self.strength)
        if s != s or s in (float("inf"), float("-inf")):
            raise ValueError("Strength must be a finite number.")
        if s < 0:
            raise ValueError(f"Strength must be zero or positive, got {s}.")
        if s > 1e9:
            raise ValueError(f"Strength {s:g} is too large; use at most 1e9.")
        if USES_DIMS[self.corruption] and not 0 <= int(self.dims) <= hidden_size:
            raise ValueError(f"Dims must be between 1 and the hidden size ({hidden_size}) (0 = all), got {self.dims}.")
        for name, allowed in (("strength_unit", UNITS), ("gate", GATES), ("selection", MODES),
                              ("fallback", FALLBACKS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}; known: {', '.join(allowed)}.")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["entity_types"] = list(self.entity_types)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ECOConfig":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "entity_types" in d:
            d["entity_types"] = tuple(d["entity_types"] or ())
        return cls(**d)

    @classmethod
    def for_preset(cls, preset, seed: int | None = None) -> "ECOConfig":
        """A preset's ECO default: its preset.yaml `eco:` block (written by the ECO calibration) over
        the class defaults; None or a preset without the block gives the class defaults."""
        block = (getattr(preset, "meta", None) or {}).get("eco") if preset is not None else None
        known = {f.name for f in fields(cls)}
        if block is not None and (not isinstance(block, dict) or set(block) - known):
            bad = sorted(set(block) - known) if isinstance(block, dict) else block
            raise ValueError(f"{preset.name}/preset.yaml: 'eco' must map ECO settings; unknown: {bad}.")
        out = cls.from_dict(block or {})
        return out if seed is None else replace(out, seed=int(seed))

    def with_strength(self, strength: float) -> "ECOConfig":
        return replace(self, strength=float(strength))


@dataclass
class ECOPlan:
    """Everything ECO decided for one prompt: gate score, decision, selection, inputs."""
    score: float | None
    threshold: float | None
    flagged: bool
    selection: Selection
    input_ids: torch.Tensor  # (1, T)
    attention_mask: torch.Tensor  # (1, T)
    inputs_embeds: torch.Tensor | None  # (1, T, D) when flagged
    matched: tuple[str, ...] = ()  # lexicon entities the prompt names (the gate scored it 1)

    def to_dict(self) -> dict:
        return {"score": self.score, "threshold": self.threshold, "flagged": self.flagged,
                "matched": list(self.matched), **self.selection.to_dict()}


def embedding_std(lm: LoadedModel) -> float:
    if "embedding_std" not in lm.extras:
        lm.extras["embedding_std"] = lm.model.get_input_embeddings().weight.float().std().item()
    return lm.extras["embedding_std"]


def absolute_strength(lm: LoadedModel, config: ECOConfig) -> float:
    return float(config.strength) * (embedding_std(lm) if config.strength_unit == "std" else 1.0)


class ECO:
    """The ECO pipeline over one loaded model and an optional prompt classifier."""

    def __init__(self, lm: LoadedModel, classifier: PromptClassifier | None = None):
        self.lm, self.classifier = lm, classifier

    # ---------------------------------------------------------------- gate and selection
    def gate(self, prompts: list[str], config: ECOConfig) -> tuple[list[float | None], list[bool], float | None]:
        if config.gate == "always":
            return [None] * len(prompts), [True] * len(prompts), None
        if config.gate == "never":
            return [None] * len(prompts), [False] * len(prompts), None
        if self.classifier is None:
            raise RuntimeError("ECO's gate needs a prompt classifier: train one for the preset, or set gate=always.")
        t = self.classifier.threshold if config.threshold is None else float(config.threshold)
        scores = self.classifier.score(prompts)
        return scores, [s > t for s in scores], t

    def selector(self, config: ECOConfig) -> TokenSelector:
        return TokenSelector(mode=config.selection, entity_types=tuple(config.entity_types),
                             fallback=config.fallback, token_model=config.token_model)

    def corrupt(self, embeds: torch.Tensor, mask: torch.Tensor, config: ECOConfig,
                generator: torch.Generator) -> torch.Tensor:
        """Apply the configured corruption at `mask` (B, T) of `embeds` (B, T, D)."""
        if not mask.any():
            return embeds
        fn = get_corruption(config.corruption)
        dims = int(config.dims) or embeds.shape[-1]  # 0 = every coordinate
        return fn(embeds, mask.to(embeds.device), dims, absolute_strength(self.lm, config), generator)

    # ---------------------------------------------------------------- one prompt
    def plan(self, prompt: str, config: ECOConfig, chat: bool = True, manual: list[int] | None = None) -> ECOPlan:
        """Gate, select and (if gated) corrupt one prompt, ready for generate()."""
        config.validate(self.lm.model.config.hidden_size)
        scores, flags, t = self.gate([prompt], config)
        sel = self.selector(config).select(self.lm.tokenizer, prompt, chat=chat, manual=manual)
        device = self.lm.device
        ids = torch.tensor([sel.input_ids], device=device)
        attn = torch.ones_like(ids)
        embeds = None
        if flags[0]:
            mask = torch.tensor([sel.selected], dtype=torch.bool)
            gen = torch.Generator().manual_seed(int(config.seed))
            with torch.no_grad():
                clean = self.lm.model.get_input_embeddings()(ids)
                embeds = self.corrupt(clean, mask, config, gen)
        matched = tuple(self.classifier.matches(prompt)) if scores[0] is not None else ()
        return ECOPlan(score=scores[0], threshold=t, flagged=flags[0], selection=sel, input_ids=ids,
                       attention_mask=attn, inputs_embeds=embeds, matched=matched)

    # ---------------------------------------------------------------- teacher-forced scoring
    def pair_logprobs(self, prefixes: list[str], conts: list[str], config: ECOConfig | None,
                      batch_size: int = 32) -> list[float]:
        """Mean log-prob of each continuation after its prefix, with ECO applied (None = Original).

        Each distinct prefix is gated and selected once (raw text, no chat template). With
        `corrupt_answer` (reference mode) the continuation is selectable text too, in every mode.
        The reference joins prompt and answer into one string, runs its entity tagger on that
        string and marks every LLM token of it that overlaps a tagged character (every token but
        the last when it has no tagger or the tagger finds nothing). Here NER reads prefix +
        continuation as one text, `prompt` marks both, and the positions index the row exactly as
        it is scored (prefix and continuation tokenized apart)."""
        lm = self.lm
        if config is None:
            return continuation_logprobs(lm.model, lm.tokenizer, prefixes, conts, batch_size)
        config.validate(lm.model.config.hidden_size)
        unique = list(dict.fromkeys(prefixes))
        _, flags, _ = self.gate(unique, config)
        flagged = dict(zip(unique, flags))
        selector, chosen = self.selector(config), {}
        positions = []
        for prefix, cont in zip(prefixes, conts):
            if not flagged[prefix]:
                positions.append([])
            elif config.corrupt_answer:
                positions.append(selector.select(lm.tokenizer, prefix, chat=False, suffix=cont,
                                                 suffix_selectable=True).positions)
            else:
                if prefix not in chosen:
                    chosen[prefix] = selector.select(lm.tokenizer, prefix, chat=False).positions
                positions.append(chosen[prefix])
        gen = torch.Generator().manual_seed(int(config.seed))
        emb = lm.model.get_input_embeddings()

        def embed(ids, mask):
            return self.corrupt(emb(ids), mask, config, gen)

        return continuation_logprobs(lm.model, lm.tokenizer, prefixes, conts, batch_size, embed, positions)

    def probe_choice_logprobs(self, probes: list[Probe], config: ECOConfig | None,
                              batch_size: int = 32) -> list[list[float]]:
        """Mean log-prob of each choice of each probe, with ECO applied (None = Original)."""
        prefixes = [p.prefix for p in probes for _ in p.choices]
        conts = [c for p in probes for c in p.choices]
        flat = self.pair_logprobs(prefixes, conts, config, batch_size)
        out, k = [], 0
        for p in probes:
            out.append(flat[k:k + len(p.choices)])
            k += len(p.choices)
        return out


def probe_summary(choice_logprobs: list[list[float]]) -> dict:
    """Accuracy (answer ranked first) and mean answer log-prob over probes."""
    n = len(choice_logprobs)
    if n == 0:
        return {"accuracy": float("nan"), "logprob": float("nan"), "n": 0}
    acc = sum(max(range(len(s)), key=s.__getitem__) == 0 for s in choice_logprobs) / n
    return {"accuracy": acc, "logprob": sum(s[0] for s in choice_logprobs) / n, "n": n}
