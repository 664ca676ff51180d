"""Every corruption against an independent, loop-by-loop reference written from its definition
(same generator draws, in the same order), and laws that hold for any input (hypothesis)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.eco.corruptions import CORRUPTIONS, USES_DIMS, get_corruption


def _coords_by(values: list[float], k: int, largest: bool) -> set[int]:
    order = sorted(range(len(values)), key=lambda j: values[j], reverse=largest)
    return set(order[:k])


def reference(name: str, x: torch.Tensor, mask: torch.Tensor, k: int, s: float, seed: int) -> torch.Tensor:
    """What the corruption is defined to do, one coordinate at a time."""
    g = torch.Generator().manual_seed(seed)
    B, T, D = x.shape
    out = x.clone()
    shared = None
    if name == "rand_noise_rand_n":
        shared = set(torch.randperm(D, generator=g)[:k].tolist())
    noise = torch.randn((B, T, D), generator=g) * s if "noise" in name else None
    for b in range(B):
        if name in ("reverse_order", "shuffle"):
            pos = [t for t in range(T) if mask[b, t]]
            if len(pos) > 1:
                order = list(range(len(pos)))[::-1] if name == "reverse_order" else \
                    torch.randperm(len(pos), generator=g).tolist()
                for i, t in enumerate(pos):
                    out[b, t] = x[b, pos[order[i]]]
            continue
        for t in range(T):
            if not mask[b, t]:
                continue
            row = x[b, t].tolist()
            if name.endswith("first_n"):
                coords = set(range(k))
            elif name == "rand_noise_rand_n":
                coords = shared
            elif name in ("rand_noise_top_k", "zero_out_top_k", "flip_sign_top_k"):
                coords = _coords_by([abs(v) for v in row], k, largest=True)
            elif name == "sub_value_top_k":
                coords = _coords_by(row, k, largest=True)
            elif name == "add_value_least_k":
                coords = _coords_by(row, k, largest=False)
            else:
                raise AssertionError(f"no reference for {name}")
            for j in coords:
                v = x[b, t, j]
                out[b, t, j] = {
                    "rand_noise_first_n": lambda: v + noise[b, t, j],
                    "rand_noise_rand_n": lambda: v + noise[b, t, j],
                    "rand_noise_top_k": lambda: v + noise[b, t, j],
                    "set_rand_noise_first_n": lambda: noise[b, t, j],
                    "zero_out_first_n": lambda: torch.tensor(0.0),
                    "zero_out_top_k": lambda: torch.tensor(0.0),
                    "flip_sign_first_n": lambda: -v,
                    "flip_sign_top_k": lambda: -v,
                    "sub_value_top_k": lambda: v - s,
                    "add_value_least_k": lambda: v + s,
                    "sub_value_first_n": lambda: v - s,
                    "add_value_first_n": lambda: v + s,
                }[name]()
    return out


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("seed", [0, 7])
def test_each_corruption_matches_its_definition(name, seed):
    torch.manual_seed(seed)
    x = torch.randn(2, 5, 12)
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 1, 1]], dtype=torch.bool)
    got = get_corruption(name)(x, mask, 4, 3.0, torch.Generator().manual_seed(seed))
    want = reference(name, x, mask, 4, 3.0, seed)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()


def test_top_k_is_by_magnitude_and_shift_is_by_signed_value():
    """A coordinate that is large and negative is a top-k by magnitude, never a signed top-k."""
    x = torch.tensor([[[-9.0, 1.0, 2.0, 0.5]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    assert get_corruption("zero_out_top_k")(x, mask, 1, 0.0, g)[0, 0].tolist() == [0.0, 1.0, 2.0, 0.5]
    assert get_corruption("sub_value_top_k")(x, mask, 1, 1.0, g)[0, 0].tolist() == [-9.0, 1.0, 1.0, 0.5]
    assert get_corruption("add_value_least_k")(x, mask, 1, 1.0, g)[0, 0].tolist() == [-8.0, 1.0, 2.0, 0.5]


def test_set_noise_replaces_while_add_noise_adds():
    x = torch.full((1, 1, 3), 1000.0)
    mask = torch.ones(1, 1, dtype=torch.bool)
    set_ = get_corruption("set_rand_noise_first_n")(x, mask, 3, 1.0, torch.Generator().manual_seed(0))
    add = get_corruption("rand_noise_first_n")(x, mask, 3, 1.0, torch.Generator().manual_seed(0))
    assert set_.abs().max() < 10 and torch.allclose(add - 1000.0, set_, atol=1e-3)


@st.composite
def inputs(draw):
    b, t, d = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    x = torch.randn((b, t, d), generator=torch.Generator().manual_seed(seed))
    bits = draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))
    mask = torch.tensor(bits, dtype=torch.bool).reshape(b, t)
    k = draw(st.integers(1, d))
    strength = draw(st.floats(0.0, 1e4, allow_nan=False))
    return x, mask, k, strength, seed


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@settings(max_examples=40, deadline=None)
@given(case=inputs())
def test_law_unselected_positions_untouched_input_never_edited(name, case):
    x, mask, k, strength, seed = case
    before = x.clone()
    out = get_corruption(name)(x, mask, k, strength, torch.Generator().manual_seed(seed))
    assert torch.equal(x, before)
    assert out.shape == x.shape and torch.equal(out[~mask], x[~mask])
    if USES_DIMS[name]:
        assert int((out != x).sum(-1).max()) <= k


@pytest.mark.parametrize("name", ["shuffle", "reverse_order"])
def test_a_row_with_one_selected_token_is_left_alone_and_draws_no_randomness(name):
    """One selected token has nothing to permute: the next row's permutation is the reference's."""
    x = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[0, 0, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [0, 1, 0, 1, 1, 1]], dtype=torch.bool)
    for seed in range(4):
        got = get_corruption(name)(x, mask, 4, 1.0, torch.Generator().manual_seed(seed))
        assert torch.equal(got, reference(name, x, mask, 4, 1.0, seed)) and torch.equal(got[0], x[0])


def test_noise_is_drawn_in_float32_whatever_the_default_dtype():
    """A seed gives the same noise in a session whose default dtype is float64 (the numbers are drawn
    in float32 on the CPU, then cast to the embeddings' dtype)."""
    x, mask = torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool)
    want = get_corruption("rand_noise_first_n")(x, mask, 8, 1.0, torch.Generator().manual_seed(5))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = get_corruption("rand_noise_first_n")(x, mask, 8, 1.0, torch.Generator().manual_seed(5))
    finally:
        torch.set_default_dtype(previous)
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_an_unknown_corruption_lists_every_known_name():
    with pytest.raises(ValueError) as err:
        get_corruption("melt")
    assert str(err.value) == f"Unknown corruption 'melt'; known: {', '.join(sorted(CORRUPTIONS))}."
