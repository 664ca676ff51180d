"""Teacher-forced scoring: mean token log-probability of a continuation given a prefix.

The log-prob primitive behind cloze probes (and, later, metrics). Prefix and continuation
are tokenized separately and concatenated, so the continuation's tokens are exactly its own.
An optional `embed` callable maps (input_ids, prefix_mask) -> inputs_embeds, which is how a
corrupted prompt (ECO) is scored without touching the model. Knows nothing about presets.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

EmbedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _pairs_to_batch(tokenizer, prefixes: Sequence[str], continuations: Sequence[str]):
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
    prefix_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, (a, _)) in enumerate(zip(rows, spans)):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        prefix_mask[i, :a] = True
    return ids, attn, prefix_mask, spans


@torch.inference_mode()
def continuation_logprobs(model, tokenizer, prefixes: Sequence[str], continuations: Sequence[str],
                          batch_size: int = 32, embed: EmbedFn | None = None) -> list[float]:
    """Mean per-token log p(continuation | prefix) for each pair, in batches (right padding)."""
    if len(prefixes) != len(continuations):
        raise ValueError("prefixes and continuations must have the same length.")
    device = model.get_input_embeddings().weight.device
    out: list[float] = []
    for start in range(0, len(prefixes), batch_size):
        ids, attn, pmask, spans = _pairs_to_batch(
            tokenizer, prefixes[start:start + batch_size], continuations[start:start + batch_size])
        ids, attn, pmask = ids.to(device), attn.to(device), pmask.to(device)
        if embed is None:
            logits = model(input_ids=ids, attention_mask=attn).logits
        else:
            logits = model(inputs_embeds=embed(ids, pmask), attention_mask=attn).logits
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
        for i, (a, b) in enumerate(spans):
            targets = ids[i, a:b]
            token_lp = logp[i, a - 1:b - 1].gather(-1, targets[:, None]).squeeze(-1)
            out.append(token_lp.mean().item())
    return out


def rank_choices(model, tokenizer, prefix_choices: Sequence[tuple[str, Sequence[str]]],
                 batch_size: int = 32, embed: EmbedFn | None = None) -> list[list[float]]:
    """For each (prefix, choices), the mean log-prob of every choice (choice 0 = the answer)."""
    prefixes, conts, sizes = [], [], []
    for prefix, choices in prefix_choices:
        prefixes += [prefix] * len(choices)
        conts += list(choices)
        sizes.append(len(choices))
    flat = continuation_logprobs(model, tokenizer, prefixes, conts, batch_size, embed)
    out, k = [], 0
    for n in sizes:
        out.append(flat[k:k + n])
        k += n
    return out
