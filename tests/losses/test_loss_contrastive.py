"""ContrastiveLoss against a brute-force loop over pairs (float64), gradients and errors."""

import math

import pytest
import torch

from magnetdml.losses import ContrastiveLoss


def _batch(seed=0, classes=(0, 0, 1, 1, 1, 2, 2, 0)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(classes), 3, generator=g, dtype=torch.float64), torch.tensor(classes)


def _reference(x, labels, margin, positive_margin, normalize):
    rows = [[float(v) for v in row] for row in x]
    if normalize:
        rows = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in rows]
    losses = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            d = math.dist(rows[i], rows[j])
            if labels[i] == labels[j]:
                losses.append(0.5 * max(0.0, d - positive_margin) ** 2)
            else:
                losses.append(0.5 * max(0.0, margin - d) ** 2)
    return losses


@pytest.mark.parametrize("positive_margin", [0.0, 0.8])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_loop_reference(positive_margin, normalize):
    x, labels = _batch(1)
    margin = 1.5 if normalize else 2.5
    expected = _reference(x, labels, margin, positive_margin, normalize)
    # Both hinges are active somewhere, else the test would not exercise them.
    assert 0 < sum(v == 0 for v in expected) < len(expected)
    kwargs = dict(margin=margin, positive_margin=positive_margin, normalize=normalize)
    per_pair = ContrastiveLoss(reduction="none", **kwargs)(x, labels)
    torch.testing.assert_close(per_pair, torch.tensor(expected, dtype=torch.float64))
    mean = ContrastiveLoss(**kwargs)(x, labels)
    assert math.isclose(float(mean), sum(expected) / len(expected), rel_tol=1e-12)
    total = ContrastiveLoss(reduction="sum", **kwargs)(x, labels)
    assert math.isclose(float(total), sum(expected), rel_tol=1e-12)


def test_gradcheck_float64_and_duplicates_have_finite_gradient():
    x, labels = _batch(2)
    x.requires_grad_(True)
    loss_fn = ContrastiveLoss(margin=2.0, positive_margin=0.1)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x,))
    # Two identical positives are 0 apart: the gradient there must be 0, not NaN.
    y = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    ContrastiveLoss()(y, torch.tensor([0, 0, 1])).backward()
    assert bool(torch.isfinite(y.grad).all())


def test_half_input_and_permutation_invariance():
    x, labels = _batch(3)
    loss_fn = ContrastiveLoss(margin=2.0)
    assert loss_fn(x.half(), labels).dtype == torch.float32
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss_fn(x[perm], labels[perm]), loss_fn(x, labels))


def test_errors():
    x, _ = _batch()
    with pytest.raises(ValueError, match="at least 2 classes.*got 1"):
        ContrastiveLoss()(x, torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"margin must be > 0.5 \(negatives must be pushed"):
        ContrastiveLoss(margin=0.5, positive_margin=0.5)
    with pytest.raises(ValueError, match="positive_margin must be >= 0.0; got -0.1"):
        ContrastiveLoss(positive_margin=-0.1)
    with pytest.raises(ValueError, match="reduction must be one of"):
        ContrastiveLoss(reduction="avg")
