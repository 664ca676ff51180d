"""Every registered corruption against its maths on random tensors."""
import pytest
import torch

from engine.eco.corruptions import CORRUPTIONS, USES_DIMS, get_corruption, list_corruptions

B, T, D, K, S = 2, 6, 16, 3, 5.0


@pytest.fixture()
def case():
    torch.manual_seed(0)
    x = torch.randn(B, T, D)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 1], mask[0, 3], mask[1, 2], mask[1, 4], mask[1, 5] = True, True, True, True, True
    return x, mask


def run(name, x, mask, seed=0):
    return get_corruption(name)(x, mask, K, S, torch.Generator().manual_seed(seed))


def test_all_fourteen_reference_functions_are_registered():
    assert set(list_corruptions()) == {
        "rand_noise_first_n", "rand_noise_rand_n", "rand_noise_top_k", "zero_out_top_k", "zero_out_first_n",
        "flip_sign_first_n", "flip_sign_top_k", "sub_value_top_k", "add_value_least_k", "sub_value_first_n",
        "add_value_first_n", "set_rand_noise_first_n", "reverse_order", "shuffle"}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_shape_dtype_untouched_positions_determinism_and_no_mutation(name, case):
    x, mask = case
    before = x.clone()
    out = run(name, x, mask)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before), "input was edited in place"
    assert torch.equal(out[~mask], x[~mask]), "an unselected position changed"
    assert not torch.equal(out[mask], x[mask]), "selected positions did not change"
    assert torch.equal(out, run(name, x, mask)), "same seed, different result"
    if USES_DIMS[name]:  # at most k coordinates of each selected token change
        changed = (out != x).sum(-1)[mask]
        assert int(changed.max()) <= K


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_empty_mask_is_identity(name, case):
    x, _ = case
    assert torch.equal(run(name, x, torch.zeros(B, T, dtype=torch.bool)), x)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_bfloat16_inputs_keep_their_dtype(name, case):
    x, mask = case
    out = run(name, x.bfloat16(), mask)
    assert out.dtype == torch.bfloat16 and torch.equal(out[~mask], x.bfloat16()[~mask])


def test_noise_depends_on_the_seed(case):
    x, mask = case
    assert not torch.equal(run("rand_noise_first_n", x, mask, 1), run("rand_noise_first_n", x, mask, 2))


def test_first_n_maths(case):
    x, mask = case
    sel = x[mask]
    assert torch.equal(run("zero_out_first_n", x, mask)[mask][:, :K], torch.zeros(len(sel), K))
    assert torch.equal(run("flip_sign_first_n", x, mask)[mask][:, :K], -sel[:, :K])
    assert torch.allclose(run("add_value_first_n", x, mask)[mask][:, :K], sel[:, :K] + S)
    assert torch.allclose(run("sub_value_first_n", x, mask)[mask][:, :K], sel[:, :K] - S)
    for name in ("zero_out_first_n", "flip_sign_first_n", "rand_noise_first_n", "set_rand_noise_first_n"):
        assert torch.equal(run(name, x, mask)[mask][:, K:], sel[:, K:])


def test_rand_noise_first_n_has_the_requested_std():
    x = torch.zeros(1, 4000, 8)
    mask = torch.ones(1, 4000, dtype=torch.bool)
    out = get_corruption("rand_noise_first_n")(x, mask, 1, 100.0, torch.Generator().manual_seed(0))
    assert abs(out[0, :, 0].std().item() - 100.0) < 5.0
    assert torch.equal(out[0, :, 1:], x[0, :, 1:])


def test_top_k_maths(case):
    x, mask = case
    sel = x[mask]
    top = sel.abs().topk(K, -1).indices
    flipped = run("flip_sign_top_k", x, mask)[mask]
    assert torch.equal(flipped.gather(-1, top), -sel.gather(-1, top))
    zeroed = run("zero_out_top_k", x, mask)[mask]
    assert torch.equal(zeroed.gather(-1, top), torch.zeros_like(top, dtype=x.dtype))
    big = sel.topk(K, -1).indices
    assert torch.allclose(run("sub_value_top_k", x, mask)[mask].gather(-1, big), sel.gather(-1, big) - S)
    small = sel.topk(K, -1, largest=False).indices
    assert torch.allclose(run("add_value_least_k", x, mask)[mask].gather(-1, small), sel.gather(-1, small) + S)


def test_rand_noise_rand_n_shares_one_coordinate_set(case):
    x, mask = case
    changed = (run("rand_noise_rand_n", x, mask) != x)[mask]
    assert (changed == changed[0]).all() and int(changed[0].sum()) == K


def test_reverse_order_and_shuffle_only_permute_selected_tokens(case):
    x, mask = case
    rev = run("reverse_order", x, mask)
    assert torch.equal(rev[0, 1], x[0, 3]) and torch.equal(rev[0, 3], x[0, 1])
    assert torch.equal(rev[1, 2], x[1, 5]) and torch.equal(rev[1, 4], x[1, 4])
    shuf = run("shuffle", x, mask)
    for b in range(B):
        pos = mask[b].nonzero().flatten()
        got = {tuple(v.tolist()) for v in shuf[b, pos]}
        assert got == {tuple(v.tolist()) for v in x[b, pos]}


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: add_value_first_n"):
        get_corruption("rand_noise_everywhere")


def test_every_coordinate_corruption_keeps_its_tensors_on_the_input_device():
    """Run on PyTorch's "meta" device (shapes and devices only): a helper tensor made on the CPU
    instead of the embeddings' device would fail here as it fails on a GPU."""
    from engine.eco.corruptions import CORRUPTIONS, USES_DIMS

    x = torch.zeros(2, 5, 8, device="meta")
    mask = torch.zeros(2, 5, dtype=torch.bool, device="meta")
    for name, fn in CORRUPTIONS.items():
        if not USES_DIMS[name]:  # the permutations index with nonzero(), which meta tensors lack
            continue
        out = fn(x, mask, 3, 1.0, torch.Generator().manual_seed(0))
        assert out.device.type == "meta" and out.shape == x.shape, name
