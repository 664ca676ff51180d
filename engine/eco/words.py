"""The gate's word head: a logistic regression on the words of a text, blended with the neighbours.

A sentence encoder places a question by its shape and its broad topic, so "the summoning charm
that pulls objects toward the caster" sits near questions about charms and magic on both sides.
The words themselves carry what it blurs: "summoning", "caster" and "charm" are written far more
on the forget side. This head weighs them: each text is its words (runs of two or more letters or
digits, lower case), counted sublinearly (1 + ln count), scaled by inverse document frequency
(ln((1 + n) / (1 + df)) + 1), unit length; p(forget) is a class-balanced logistic regression on
that vector, trained on the gate's training texts (attacked copies included), never on its
calibration fold. Words in fewer than MIN_DF training texts are left out.

The gate scores each window as (1 - weight) x neighbours + weight x words (ClassifierConfig.words);
tau is then calibrated on the blend, so alpha still bounds the gate as shipped. Fitting takes a
few seconds (scikit-learn); scoring is a dot product over a text's own words, and the head is kept
as plain JSON beside the neighbour bank (no pickle).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

WORDS_FILE = "lethe_words.json"
MIN_DF = 2
WORD = re.compile(r"\b\w\w+\b")


def counts(text: str) -> Counter:
    return Counter(WORD.findall(text.lower()))


class WordHead:
    """p(forget | words of a text); `weight` is its share of the blended score."""

    def __init__(self, vocab: list[str], idf: list[float], coef: list[float], intercept: float, weight: float):
        if not (len(vocab) == len(idf) == len(coef)):
            raise ValueError("A word head needs one idf and one coefficient per word.")
        self.vocab, self.idf, self.coef = list(vocab), [float(x) for x in idf], [float(x) for x in coef]
        self.intercept, self.weight = float(intercept), float(weight)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    def vector(self, text: str) -> dict[int, float]:
        """The text's unit-length tf-idf vector over the vocabulary, as {index: value}."""
        v = {self.index[w]: (1 + math.log(n)) * self.idf[self.index[w]] for w, n in counts(text).items()
             if w in self.index}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {i: x / norm for i, x in v.items()}

    def score(self, texts: list[str]) -> list[float]:
        out = []
        for t in texts:
            z = self.intercept + sum(x * self.coef[i] for i, x in self.vector(t).items())
            out.append(1 / (1 + math.exp(-z)) if z > -500 else 0.0)
        return out

    def blend(self, neighbours: list[float], texts: list[str]) -> list[float]:
        return [(1 - self.weight) * a + self.weight * b for a, b in zip(neighbours, self.score(texts))]

    @classmethod
    def fit(cls, texts: list[str], labels: list[int], weight: float, c: float = 10.0) -> "WordHead":
        """Vocabulary, idf and a class-balanced logistic regression (inverse regularisation c)."""
        import numpy as np
        from scipy.sparse import csr_matrix
        from sklearn.linear_model import LogisticRegression

        if len(set(labels)) < 2:
            raise ValueError("The word head needs texts of both labels.")
        docs = [counts(t) for t in texts]
        df = Counter(w for d in docs for w in d)
        vocab = sorted(w for w, n in df.items() if n >= MIN_DF)
        idf = [math.log((1 + len(texts)) / (1 + df[w])) + 1 for w in vocab]
        head = cls(vocab, idf, [0.0] * len(vocab), 0.0, weight)
        rows, cols, vals = [], [], []
        for r, t in enumerate(texts):
            for i, x in head.vector(t).items():
                rows.append(r), cols.append(i), vals.append(x)
        X = csr_matrix((vals, (rows, cols)), shape=(len(texts), max(len(vocab), 1)))
        lr = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(X, np.asarray(labels))
        head.coef, head.intercept = lr.coef_[0].tolist()[:len(vocab)], float(lr.intercept_[0])
        return head

    @classmethod
    def as_read(cls, tokenizer, data: list[tuple[str, int]], max_length: int, weight: float,
                c: float = 10.0) -> "WordHead":
        """Fitted on the training texts as the classifier reads them: each text's last max_length
        tokens (room left for the two special tokens), decoded, so training and scoring see the same words."""
        room = max(8, max_length - 2)
        ids = tokenizer([t for t, _ in data], add_special_tokens=False)["input_ids"]
        texts = tokenizer.batch_decode([x[-room:] for x in ids])
        return cls.fit(texts, [label for _, label in data], weight, c)

    def save(self, folder: Path) -> None:
        data = {"vocab": self.vocab, "idf": self.idf, "coef": self.coef, "intercept": self.intercept,
                "weight": self.weight}
        (Path(folder) / WORDS_FILE).write_text(json.dumps(data))

    @classmethod
    def load(cls, folder: Path) -> "WordHead | None":
        path = Path(folder) / WORDS_FILE
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return cls(d["vocab"], d["idf"], d["coef"], d["intercept"], d["weight"])
