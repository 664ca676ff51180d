"""ECO's corruption functions: small pure tensor functions, registered by name in one table.

Every function has the signature

    fn(embeds, mask, dims, strength, generator) -> new_embeds

    embeds     (B, T, D) prompt embeddings, any float dtype, any device; never edited in place
    mask       (B, T) bool, True where a token is selected for corruption (gate already applied)
    dims       k, the number of embedding coordinates touched (1 <= k <= D)
    strength   sigma, in the embedding's own units (eco.py converts relative strengths)
    generator  a CPU torch.Generator: noise is drawn in float32 on the CPU, then moved, so a seed
               gives the same numbers on every device; the global RNG is never used

Names and maths follow the reference ECO implementation. Where it is broken Lethe fixes it:
`reverse_order` and `shuffle` permute only the selected positions of each row (the reference
permutes every position of every prompt), and `set_rand_noise_first_n` leaves unselected
positions untouched (the reference zeroes their first k coordinates).
"""
from __future__ import annotations

from typing import Callable

import torch

Corruption = Callable[[torch.Tensor, torch.Tensor, int, float, torch.Generator], torch.Tensor]


def get_corruption(name: str) -> Corruption:
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}; known: {', '.join(sorted(CORRUPTIONS))}.")
    return CORRUPTIONS[name]


def list_corruptions() -> list[str]:
    return sorted(CORRUPTIONS)


# ---------------------------------------------------------------------------- helpers

def _noise(shape, generator: torch.Generator, like: torch.Tensor, std: float) -> torch.Tensor:
    z = torch.randn(shape, generator=generator, dtype=torch.float32)
    return (z * std).to(device=like.device, dtype=like.dtype)


def _first_n(embeds: torch.Tensor, dims: int) -> torch.Tensor:
    """(D,) bool over coordinates 0..k-1."""
    sel = torch.zeros(embeds.shape[-1], dtype=torch.bool, device=embeds.device)
    sel[:dims] = True
    return sel


def _top_k(values: torch.Tensor, dims: int, largest: bool = True) -> torch.Tensor:
    """(B, T, D) bool marking each token's k largest (or smallest) coordinates of `values`."""
    idx = values.topk(dims, largest=largest).indices  # along the last (coordinate) axis
    return torch.zeros_like(values, dtype=torch.bool).scatter_(-1, idx, True)


def _where(mask: torch.Tensor, coords: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Take `new` at selected tokens x selected coordinates, `old` elsewhere."""
    full = mask[..., None] & coords  # (B, T, D) via broadcast of (B, T, 1) & (D,) or (B, T, D)
    return torch.where(full, new, old)


# ---------------------------------------------------------------------------- noise

def rand_noise_first_n(embeds, mask, dims, strength, generator):
    """e[j] += N(0, sigma^2) for the first k coordinates of every selected token."""
    noise = _noise(embeds.shape, generator, embeds, strength)
    return _where(mask, _first_n(embeds, dims), embeds + noise, embeds)


def rand_noise_rand_n(embeds, mask, dims, strength, generator):
    """e[j] += N(0, sigma^2) on one random set of k coordinates shared by the whole batch."""
    perm = torch.randperm(embeds.shape[-1], generator=generator)[:dims].to(embeds.device)
    coords = torch.zeros(embeds.shape[-1], dtype=torch.bool, device=embeds.device)
    coords[perm] = True
    noise = _noise(embeds.shape, generator, embeds, strength)
    return _where(mask, coords, embeds + noise, embeds)


def rand_noise_top_k(embeds, mask, dims, strength, generator):
    """e[j] += N(0, sigma^2) on each token's k largest-magnitude coordinates."""
    noise = _noise(embeds.shape, generator, embeds, strength)
    return _where(mask, _top_k(embeds.abs(), dims), embeds + noise, embeds)


def set_rand_noise_first_n(embeds, mask, dims, strength, generator):
    """e[j] <- N(0, sigma^2) for the first k coordinates (selected tokens only; see module doc)."""
    noise = _noise(embeds.shape, generator, embeds, strength)
    return _where(mask, _first_n(embeds, dims), noise, embeds)


# ---------------------------------------------------------------------------- zero / flip

def zero_out_first_n(embeds, mask, dims, strength, generator):
    """e[j] <- 0 for the first k coordinates."""
    return _where(mask, _first_n(embeds, dims), torch.zeros_like(embeds), embeds)


def zero_out_top_k(embeds, mask, dims, strength, generator):
    """e[j] <- 0 for each token's k largest-magnitude coordinates."""
    return _where(mask, _top_k(embeds.abs(), dims), torch.zeros_like(embeds), embeds)


def flip_sign_first_n(embeds, mask, dims, strength, generator):
    """e[j] <- -e[j] for the first k coordinates."""
    return _where(mask, _first_n(embeds, dims), -embeds, embeds)


def flip_sign_top_k(embeds, mask, dims, strength, generator):
    """e[j] <- -e[j] for each token's k largest-magnitude coordinates."""
    return _where(mask, _top_k(embeds.abs(), dims), -embeds, embeds)


# ---------------------------------------------------------------------------- shift by a constant

def sub_value_top_k(embeds, mask, dims, strength, generator):
    """e[j] -= sigma on each token's k largest (signed) coordinates."""
    return _where(mask, _top_k(embeds, dims), embeds - strength, embeds)


def add_value_least_k(embeds, mask, dims, strength, generator):
    """e[j] += sigma on each token's k smallest (signed) coordinates."""
    return _where(mask, _top_k(embeds, dims, largest=False), embeds + strength, embeds)


def sub_value_first_n(embeds, mask, dims, strength, generator):
    """e[j] -= sigma for the first k coordinates."""
    return _where(mask, _first_n(embeds, dims), embeds - strength, embeds)


def add_value_first_n(embeds, mask, dims, strength, generator):
    """e[j] += sigma for the first k coordinates."""
    return _where(mask, _first_n(embeds, dims), embeds + strength, embeds)


# ---------------------------------------------------------------------------- order

def _permute_selected(embeds, mask, order_fn):
    out = embeds.clone()
    for b in range(embeds.shape[0]):
        pos = mask[b].nonzero().flatten()  # zero or one position: an identity permutation, no draw
        out[b, pos] = embeds[b, pos[order_fn(pos.numel())]]
    return out


def reverse_order(embeds, mask, dims, strength, generator):
    """Reverse the order of the selected tokens within each prompt (others stay in place)."""
    return _permute_selected(embeds, mask, lambda n: torch.arange(n - 1, -1, -1))


def shuffle(embeds, mask, dims, strength, generator):
    """Randomly permute the selected tokens within each prompt (others stay in place)."""
    return _permute_selected(embeds, mask, lambda n: torch.randperm(n, generator=generator))


# ---------------------------------------------------------------------------- the registry

# name -> (function, uses strength, uses dims); a plain table, so each function is an ordinary one
CORRUPTIONS_TABLE = {
    "rand_noise_first_n": (rand_noise_first_n, True, True),
    "rand_noise_rand_n": (rand_noise_rand_n, True, True),
    "rand_noise_top_k": (rand_noise_top_k, True, True),
    "set_rand_noise_first_n": (set_rand_noise_first_n, True, True),
    "zero_out_first_n": (zero_out_first_n, False, True),
    "zero_out_top_k": (zero_out_top_k, False, True),
    "flip_sign_first_n": (flip_sign_first_n, False, True),
    "flip_sign_top_k": (flip_sign_top_k, False, True),
    "sub_value_top_k": (sub_value_top_k, True, True),
    "add_value_least_k": (add_value_least_k, True, True),
    "sub_value_first_n": (sub_value_first_n, True, True),
    "add_value_first_n": (add_value_first_n, True, True),
    "reverse_order": (reverse_order, False, False),
    "shuffle": (shuffle, False, False),
}
CORRUPTIONS: dict[str, Corruption] = {n: fn for n, (fn, _, _) in CORRUPTIONS_TABLE.items()}
USES_STRENGTH: dict[str, bool] = {n: uses for n, (_, uses, _) in CORRUPTIONS_TABLE.items()}
USES_DIMS: dict[str, bool] = {n: uses for n, (_, _, uses) in CORRUPTIONS_TABLE.items()}
