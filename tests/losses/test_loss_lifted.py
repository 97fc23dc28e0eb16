"""LiftedStructureLoss against the literal eq. 4 of Song et al. (2016), looped in float64."""

import math

import pytest
import torch

from magnetdml.losses import LiftedStructureLoss


def _batch(seed=0, classes=(0, 0, 1, 1, 1, 2, 3, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(classes), 3, generator=g, dtype=torch.float64), torch.tensor(classes)


def _reference(x, labels, margin, normalize):
    """J = 1/(2|P|) sum_{(i,j) in P} max(0, J_ij)^2 with exps summed literally."""
    rows = [[float(v) for v in row] for row in x]
    if normalize:
        rows = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in rows]
    lab, n = labels.tolist(), len(rows)
    terms = []
    for i in range(n):
        for j in range(i + 1, n):
            if lab[i] != lab[j]:
                continue
            total = sum(
                math.exp(margin - math.dist(rows[i], rows[k])) for k in range(n) if lab[k] != lab[i]
            )
            total += sum(
                math.exp(margin - math.dist(rows[j], rows[k])) for k in range(n) if lab[k] != lab[j]
            )
            j_ij = math.log(total) + math.dist(rows[i], rows[j])
            terms.append(0.5 * max(0.0, j_ij) ** 2)
    return terms


@pytest.mark.parametrize("margin,normalize", [(1.0, False), (0.5, True), (-3.0, False)])
def test_matches_literal_equation(margin, normalize):
    x, labels = _batch(1)
    expected = _reference(x, labels, margin, normalize)
    assert len(expected) == 1 + 3 + 1  # positive pairs of classes 0, 1, 3
    per_pair = LiftedStructureLoss(margin, normalize, reduction="none")(x, labels)
    torch.testing.assert_close(per_pair, torch.tensor(expected, dtype=torch.float64))
    mean = LiftedStructureLoss(margin, normalize)(x, labels)
    assert math.isclose(float(mean), sum(expected) / len(expected), rel_tol=1e-12)


def test_no_overflow_where_the_literal_sum_would():
    x, labels = _batch(2)
    loss = LiftedStructureLoss(margin=1000.0)(x.float(), labels)
    assert math.isfinite(float(loss)) and float(loss) > 1e5


def test_gradcheck_float64():
    x, labels = _batch(3)
    x.requires_grad_(True)
    loss_fn = LiftedStructureLoss(margin=1.0, normalize=True)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x,))


def test_no_positive_pair_gives_zero_loss_with_grad():
    x = torch.randn(3, 2, requires_grad=True)
    loss = LiftedStructureLoss()(x, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_errors_and_half_input():
    x, labels = _batch()
    assert LiftedStructureLoss()(x.half(), labels).dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2 classes.*got 1"):
        LiftedStructureLoss()(x, torch.ones(8, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have one entry per embedding"):
        LiftedStructureLoss()(x, labels[:5])
    with pytest.raises(ValueError, match="margin must be finite; got inf"):
        LiftedStructureLoss(margin=float("inf"))
