"""The gate: one prompt classifier per preset, trained once (or read from the cache) and shared.

It decides which prompts ECO corrupts. `classify` reports each prompt's score, decision and the
lexicon names that fixed it; `report` measures the gate on a preset split.
"""
from __future__ import annotations

import threading

from .. import checks
from ..session import MAX_PROMPT_CHARS, Session
from .calibration import gate_report
from .classifier import ClassifierConfig, PromptClassifier, preset_classifier


def check_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Return the prompt, or raise ValueError with one sentence saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("The prompt is empty: type a question or a sentence to continue.")
    return checks.text("The prompt", prompt, max_chars)


class Gate:
    def __init__(self, session: Session):
        self.session = session
        self.classifiers: dict[str, PromptClassifier] = {}  # preset name -> gate classifier
        self._lock = threading.Lock()

    def classifier(self, preset: str | None = None, on_step=None, stop_event=None,
                   config: ClassifierConfig | None = None) -> PromptClassifier:
        """The preset's gate classifier: from memory, the cache, or trained now (once)."""
        p = self.session.preset_for(preset)
        with self._lock:
            if p.name not in self.classifiers:
                clf = preset_classifier(p, config, on_step=on_step, stop_event=stop_event)
                if clf is None:
                    raise RuntimeError("Classifier training was stopped; nothing was saved.")
                self.classifiers[p.name] = clf
            return self.classifiers[p.name]

    def use(self, name_or_path: str, preset: str | None = None, threshold: float | None = None) -> dict:
        """Gate with an external Hugging Face sequence classifier instead of the trained one."""
        clf = PromptClassifier.load(name_or_path, threshold)
        self.classifiers[self.session.preset_for(preset).name] = clf
        return clf.info()

    def classify(self, prompts: list[str], preset: str | None = None, threshold: float | None = None) -> dict:
        """{threshold, results: [{prompt, score, flagged, matched}]} for each prompt (matched: the
        forget-lexicon entities it names, as written or disguised, which score it 1)."""
        for p in prompts:
            check_prompt(p, self.session.max_prompt_chars)
        threshold = checks.threshold(threshold)
        clf = self.classifier(preset)
        t = clf.threshold if threshold is None else threshold
        scores = clf.score(prompts)
        return {"threshold": t, "classifier": clf.name,
                "results": [{"prompt": p, "score": s, "flagged": s > t, "matched": clf.matches(p)}
                            for p, s in zip(prompts, scores)]}

    def report(self, preset: str | None = None, split: str = "test") -> dict:
        p = self.session.preset_for(preset)
        clf = self.classifier(p.name)
        return gate_report(clf, [r.prompt for r in p.prompts("forget", split)],
                           [r.prompt for r in p.prompts("retain", split)])
