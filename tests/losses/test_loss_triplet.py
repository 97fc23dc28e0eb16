"""TripletLoss against brute-force loop references (float64), gradients and edge cases."""

import math

import pytest
import torch

from magnetdml.losses import TripletLoss
from magnetdml.losses.miners import MINERS, mine, pairwise_distances


def _batch(seed=0, classes=(0, 0, 0, 1, 1, 1, 2, 2, 3, 3), dim=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(classes), dim, generator=g, dtype=torch.float64), torch.tensor(classes)


def _reference(x, labels, margin, variant, normalize, triplets):
    """Literal formulas, one triplet at a time, in Python floats."""
    rows = [[float(v) for v in row] for row in x]
    if normalize:
        rows = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in rows]
    losses = []
    for a, p, n in zip(*(t.tolist() for t in triplets), strict=True):
        d_ap, d_an = math.dist(rows[a], rows[p]), math.dist(rows[a], rows[n])
        if variant == "hinge":
            losses.append(max(0.0, d_ap**2 - d_an**2 + margin))
        else:
            d_plus = math.exp(d_ap) / (math.exp(d_ap) + math.exp(d_an))
            losses.append(d_plus**2)
    return losses


@pytest.mark.parametrize("variant", ["hinge", "ratio"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("miner", MINERS)
def test_matches_loop_reference(variant, normalize, miner):
    x, labels = _batch(seed=1)
    loss_fn = TripletLoss(
        margin=0.7,
        variant=variant,
        normalize=normalize,
        miner=miner,
        impostor_fraction=0.3,
        reduction="none",
    )
    losses = loss_fn(x, labels)
    # The miner must see the distances the loss uses (squared for the hinge).
    xn = torch.nn.functional.normalize(x, dim=1) if normalize else x
    d = pairwise_distances(xn, squared=variant == "hinge")
    expected_triplets = mine(
        miner, labels, d, margin=0.7 if variant == "hinge" else None, impostor_fraction=0.3
    )
    for got, want in zip(loss_fn.last_triplets, expected_triplets, strict=True):
        assert torch.equal(got, want)
    expected = _reference(x, labels, 0.7, variant, normalize, loss_fn.last_triplets)
    assert len(expected) > 0
    torch.testing.assert_close(losses, torch.tensor(expected, dtype=torch.float64))
    mean = TripletLoss(
        margin=0.7, variant=variant, normalize=normalize, miner=miner, impostor_fraction=0.3
    )(x, labels)
    torch.testing.assert_close(
        mean, torch.tensor(sum(expected) / len(expected), dtype=torch.float64)
    )


def test_all_miner_mean_is_over_every_valid_triplet():
    x, labels = _batch(seed=2)
    loss = TripletLoss(margin=1.0, normalize=False, miner="all", reduction="sum")(x, labels)
    lab = labels.tolist()
    total = sum(
        max(0.0, float((x[a] - x[p]).pow(2).sum() - (x[a] - x[n]).pow(2).sum()) + 1.0)
        for a in range(10)
        for p in range(10)
        for n in range(10)
        if a != p and lab[a] == lab[p] and lab[n] != lab[a]
    )
    assert math.isclose(float(loss), total, rel_tol=1e-12)


@pytest.mark.parametrize(
    "variant,miner", [("hinge", "all"), ("ratio", "batch_hard"), ("hinge", "nearest_impostors")]
)
def test_gradcheck_float64(variant, miner):
    x, labels = _batch(seed=3)
    x.requires_grad_(True)
    loss_fn = TripletLoss(
        margin=2.0, variant=variant, normalize=True, miner=miner, impostor_fraction=0.5
    )
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x,))


def test_no_triplet_gives_zero_loss_with_grad():
    x = torch.randn(4, 3, requires_grad=True)
    for reduction in ("mean", "sum"):
        loss = TripletLoss(miner="all", reduction=reduction)(x, torch.tensor([0, 1, 2, 3]))
        assert loss.item() == 0.0 and loss.grad_fn is not None
        loss.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    none = TripletLoss(miner="all", reduction="none")(x, torch.tensor([0, 1, 2, 3]))
    assert none.shape == (0,)


def test_scale_and_permutation_invariance_when_normalized():
    x, labels = _batch(seed=4)
    loss_fn = TripletLoss(margin=0.5, miner="all", normalize=True)
    base = loss_fn(x, labels)
    torch.testing.assert_close(loss_fn(x * 100.0, labels), base)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss_fn(x[perm], labels[perm]), base)


def test_half_input_computes_in_float32():
    x, labels = _batch(seed=5)
    loss = TripletLoss(miner="all")(x.half(), labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, TripletLoss(miner="all")(x.half().float(), labels))


def test_errors_name_the_parameter():
    x, labels = _batch()
    with pytest.raises(ValueError, match="at least 2 classes.*got 1"):
        TripletLoss()(x, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="miner must be one of .*'semi_hard'.*got 'hard'"):
        TripletLoss(miner="hard")
    with pytest.raises(ValueError, match="variant must be one of 'hinge', 'ratio'; got 'soft'"):
        TripletLoss(variant="soft")
    with pytest.raises(ValueError, match=r"impostor_fraction must be > 0.0 .*; got 0.0"):
        TripletLoss(impostor_fraction=0.0)
    with pytest.raises(ValueError, match=r"impostor_fraction must be <= 1.0 .*; got 1.5"):
        TripletLoss(impostor_fraction=1.5)
    with pytest.raises(ValueError, match="margin must be >= 0.0; got -1.0"):
        TripletLoss(margin=-1.0)
    with pytest.raises(TypeError, match="normalize must be True or False; got 'yes'"):
        TripletLoss(normalize="yes")
