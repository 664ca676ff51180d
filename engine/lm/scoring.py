"""Teacher-forced scoring: mean token log-probability of a continuation given a prefix.

The log-prob primitive behind cloze probes (and, later, metrics). Prefix and continuation
are tokenized separately and concatenated, so the continuation's tokens are exactly its own.
An optional `embed` callable maps (input_ids, corrupt_mask) -> inputs_embeds, with
`positions[i]` naming the token indices of pair i to mark in the mask: this is how a corrupted
prompt (ECO) is scored without touching the model. Knows nothing about presets.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

EmbedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids (B,T), mask (B,T) bool) -> (B,T,D)


def _pairs_to_batch(tokenizer, prefixes: Sequence[str], continuations: Sequence[str], positions=None):
    rows, spans = [], []
    for prefix, cont in zip(prefixes, continuations):
        p = tokenizer(prefix, add_special_tokens=True)["input_ids"]
        c = tokenizer(cont, add_special_tokens=False)["input_ids"]
        if not c:
            raise ValueError(f"The continuation {cont!r} has no tokens.")
        rows.append(p + c)
        spans.append((len(p), len(p) + len(c)))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        for p in (positions[i] if positions is not None else ()):
            if p < len(row):
                mask[i, p] = True
    return ids, attn, mask, spans


def continuation_logprobs(model, tokenizer, prefixes: Sequence[str], continuations: Sequence[str],
                          batch_size: int = 32, embed: EmbedFn | None = None,
                          positions: Sequence[Sequence[int]] | None = None) -> list[float]:
    """Mean per-token log p(continuation | prefix) for each pair, in batches (right padding)."""
    if len(prefixes) != len(continuations):
        raise ValueError("prefixes and continuations must have the same length.")
    device = model.get_input_embeddings().weight.device
    out: list[float] = []
    for start in range(0, len(prefixes), batch_size):
        pos = positions[start:start + batch_size] if positions is not None else None
        ids, attn, pmask, spans = _pairs_to_batch(
            tokenizer, prefixes[start:start + batch_size], continuations[start:start + batch_size], pos)
        ids, attn, pmask = ids.to(device), attn.to(device), pmask.to(device)
        with torch.inference_mode():
            inputs = {"input_ids": ids} if embed is None else {"inputs_embeds": embed(ids, pmask)}
            logits = model(**inputs, attention_mask=attn).logits
            for i, (a, b) in enumerate(spans):  # normalise only the rows that predict the continuation:
                rows = logits[i, a - 1:b - 1].float()  # no (B, T, V) log-softmax copy (memory peak)
                token_lp = rows.gather(-1, ids[i, a:b, None]).squeeze(-1) - torch.logsumexp(rows, dim=-1)
                out.append(token_lp.mean().item())
    return out


def rank_choices(model, tokenizer, prefix_choices: Sequence[tuple[str, Sequence[str]]],
                 batch_size: int = 32, embed: EmbedFn | None = None,
                 positions: Sequence[Sequence[int]] | None = None) -> list[list[float]]:
    """For each (prefix, choices), the mean log-prob of every choice (choice 0 = the answer).

    `positions[i]` (optional) are the token indices to corrupt for prefix i, shared by its choices."""
    prefixes, conts, sizes, pos = [], [], [], []
    for i, (prefix, choices) in enumerate(prefix_choices):
        prefixes += [prefix] * len(choices)
        conts += list(choices)
        sizes.append(len(choices))
        pos += [positions[i] if positions is not None else ()] * len(choices)
    flat = continuation_logprobs(model, tokenizer, prefixes, conts, batch_size, embed,
                                 pos if positions is not None else None)
    out, k = [], 0
    for n in sizes:
        out.append(flat[k:k + n])
        k += n
    return out
