"""Small shared test helpers (fixtures live in conftest.py)."""
from __future__ import annotations


def star_wars_subset(prompts: int, probes: int, passages: int):
    """The star_wars preset cut to its first test prompts and probes per side and first retain passages."""
    import dataclasses

    from engine.data.presets import load_preset

    p = load_preset("star_wars")
    test = lambda rows, n: [r for r in rows if r.split == "test"][:n]  # noqa: E731
    return dataclasses.replace(p, forget_prompts=test(p.forget_prompts, prompts),
                               retain_prompts=test(p.retain_prompts, prompts), forget_probes=test(p.forget_probes, probes),
                               retain_probes=test(p.retain_probes, probes), retain_corpus=p.retain_corpus[:passages])
