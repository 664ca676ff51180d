"""`probe`: is the knowledge still inside, even when the output hides it?

A linear probe reads one hidden layer (the middle one by default) at the last token of each
probe's prefix + candidate answer. It is a logistic regression on standardised features, fitted
on the train split's cloze probes to tell the true answer (1) from its distractors (0), and scored
on the split being measured: a probe is right when its true answer gets the highest score of its
four candidates (chance 0.25). Read under the variant's weights; ECO's are the Original's.
"""
from __future__ import annotations

import contextlib

import torch

from ..data.records import Probe


def layer_of(lm, layer: int) -> int:
    """hidden_states index: -1 means the middle decoder layer."""
    n = int(getattr(lm.model.config, "num_hidden_layers", 2))
    return n // 2 if layer < 0 else min(layer, n)


@contextlib.contextmanager
def _captured(model, layer: int):
    """Record the states of hidden layer `layer` (0 = the embeddings, i = decoder block i's output)
    with a forward hook removed on exit (no model state is left behind)."""
    seen: list[torch.Tensor] = []
    module = (model.get_input_embeddings() if layer == 0 else model.get_decoder().layers[layer - 1])

    def hook(_module, _inputs, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def features(lm, probes: list[Probe], layer: int, batch_size: int = 16) -> torch.Tensor:
    """(len(probes) * 4, hidden) float32: the layer's state at the last token of prefix + choice."""
    texts = [p.prefix + c for p in probes for c in p.choices]
    tok, out = lm.tokenizer, []
    for start in range(0, len(texts), batch_size):
        rows = [tok(t, add_special_tokens=True)["input_ids"] for t in texts[start:start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r)], mask[k, : len(r)] = torch.tensor(r), 1
        with torch.inference_mode(), _captured(lm.model, layer) as seen:
            lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device))
        hidden = seen[0]
        last = torch.tensor([len(r) - 1 for r in rows], device=hidden.device)
        out.append(hidden[torch.arange(len(rows), device=hidden.device), last].float().cpu())
    return torch.cat(out)


def probe_accuracy(lm, train: list[Probe], test: list[Probe], layer: int = -1, seed: int = 0) -> dict:
    """{accuracy, n, train_n, layer}: the linear probe's share of test probes ranked right."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(train) < 2 or not test:
        raise ValueError("The probe attack needs at least 2 train-split probes and 1 probe to score.")
    index = layer_of(lm, layer)
    x_train, x_test = features(lm, train, index).numpy(), features(lm, test, index).numpy()
    y = [1 if k % 4 == 0 else 0 for k in range(len(x_train))]
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=0.1, max_iter=2000, random_state=seed).fit(scaler.transform(x_train), y)
    scores = clf.decision_function(scaler.transform(x_test)).reshape(len(test), 4)
    rows = [{"id": p.id, "correct": bool(s.argmax() == 0)} for p, s in zip(test, scores)]
    return {"accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows), "train_n": len(train),
            "layer": index, "rows": rows}


__all__ = ["features", "layer_of", "probe_accuracy"]
