"""Magnet Loss against docs/design.md §1: golden values, a slow reference, invariances,
gradients."""

import math

import numpy as np
import pytest
import torch

import magnetdml as md
from magnetdml.losses.magnet import magnet_loss_terms


def reference_magnet(embeddings, labels, clusters, alpha, variance=None, scale=1.0):
    """Paper eq. 5 written the slow obvious way with Python loops, in torch float64, with the
    inverse temperature ``scale`` of DESIGN §1 on every variance-normalised distance."""
    r = embeddings.double()
    ids = sorted(set(clusters.tolist()))
    members = {c: [n for n in range(len(r)) if int(clusters[n]) == c] for c in ids}
    mean = {c: sum(r[n] for n in members[c]) / len(members[c]) for c in ids}
    label_of = {c: int(labels[members[c][0]]) for c in ids}
    own = [((r[n] - mean[int(clusters[n])]) ** 2).sum() for n in range(len(r))]
    s2 = sum(own) / (len(r) - 1) if variance is None else torch.tensor(variance).double()
    losses = []
    for n in range(len(r)):
        others = [
            torch.exp(-scale * ((r[n] - mean[c]) ** 2).sum() / (2 * s2))
            for c in ids
            if label_of[c] != int(labels[n])
        ]
        value = scale * own[n] / (2 * s2) + alpha + torch.log(sum(others))
        losses.append(torch.clamp(value, min=0.0))
    return torch.stack(losses)


def golden_batch():
    rows = torch.tensor(np.random.RandomState(42).random_sample([24, 8]))
    return rows, torch.arange(24) // 4


def random_batch(seed, clusters=6, per_cluster=4, dim=5, labels=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(clusters * per_cluster, dim, generator=g, dtype=dtype)
    cluster_ids = torch.arange(clusters).repeat_interleave(per_cluster)
    cluster_labels = torch.arange(clusters) if labels is None else torch.tensor(labels)
    return x, cluster_labels[cluster_ids], cluster_ids


@pytest.mark.parametrize(
    "labels,alpha,expected",
    [
        ([0, 1, 2, 3, 4, 5], 1.0, 2.3396316),
        ([0, 1, 2, 3, 4, 5], 10.0, 11.3396316),
        ([0, 1, 1, 3, 4, 5], 1.0, 2.2603454),
    ],
)
def test_golden_values(labels, alpha, expected):
    rows, clusters = golden_batch()
    loss = md.MagnetLoss(alpha=alpha)(rows, torch.tensor(labels)[clusters], clusters)
    assert loss.item() == pytest.approx(expected, abs=1e-7)


def test_golden_value_with_temperature():
    """DESIGN §1: the golden inputs, classes [0..5], alpha 1, global scaling s = 3.52."""
    rows, clusters = golden_batch()
    loss = md.MagnetLoss(alpha=1.0, scale=3.52)(rows, clusters, clusters)
    assert loss.item() == pytest.approx(1.8078614, abs=1e-7)
    # the default is s = 1, eq. 5, whose golden values test_golden_values checks
    assert md.MagnetLoss().scale == 1.0
    assert (
        md.MagnetLoss(scale=1.0)(rows, clusters, clusters).item()
        == md.MagnetLoss()(rows, clusters, clusters).item()
    )


@pytest.mark.parametrize("labels", [None, [0, 0, 1, 1, 2, 2], [3, 7, 3, 7, 9, 9]])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 7.0])
@pytest.mark.parametrize("scale", [1.0, 0.4, 3.52, 14.2])
def test_matches_slow_reference(labels, alpha, scale):
    x, y, c = random_batch(1, labels=labels)
    ours = md.MagnetLoss(alpha=alpha, scale=scale, reduction="none")(x, y, c)
    torch.testing.assert_close(ours, reference_magnet(x, y, c, alpha, scale=scale))


@pytest.mark.parametrize("scale", [0.5, 2.33, 6.42])
def test_temperature_gradients_gradcheck_and_scale_invariance(scale):
    x, y, c = random_batch(12, clusters=4, per_cluster=3, dim=4, labels=[0, 1, 1, 2])
    loss_fn = md.MagnetLoss(alpha=1.5, scale=scale, reduction="none")
    assert torch.autograd.gradcheck(loss_fn, (x.clone().requires_grad_(True), y, c))
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss_fn(x1, y, c).mean().backward()
    reference_magnet(x2, y, c, 1.5, scale=scale).mean().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    # the temperature acts on the variance-normalised distances: the loss keeps its
    # invariance to the embedding's scale for every s
    torch.testing.assert_close(loss_fn(x * 250.0, y, c), loss_fn(x, y, c))


def test_own_cluster_term_has_the_fixed_batch_mean_of_design():
    """DESIGN §1: the batch mean of s ||r - mu(r)||^2 / (2 s2) is s (B - 1) / (2 B)."""
    x, y, c = random_batch(13)
    terms = md.losses.cluster_terms(x, y, c, scale=3.0)
    assert terms.own.mean().item() == pytest.approx(3.0 * (len(x) - 1) / (2 * len(x)))


def test_gradients_match_reference_through_means_and_variance():
    x, y, c = random_batch(2, labels=[0, 0, 1, 1, 2, 2])
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    md.MagnetLoss(alpha=1.0)(x1, y, c).backward()
    reference_magnet(x2, y, c, 1.0).mean().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    # Detaching the means and the variance changes the gradient: they must be differentiated.
    assert x1.grad.abs().sum() > 0


def test_gradcheck_float64():
    x, y, c = random_batch(3, clusters=4, per_cluster=3, dim=4, labels=[0, 1, 1, 2])
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda e: md.MagnetLoss(alpha=2.0, reduction="none")(e, y, c), (x,)
    )


def test_scale_and_translation_invariance():
    x, y, c = random_batch(4, labels=[0, 1, 2, 0, 1, 2])
    loss = md.MagnetLoss()(x, y, c)
    assert md.MagnetLoss()(x * 100.0, y, c).item() == pytest.approx(loss.item(), rel=1e-10)
    assert md.MagnetLoss()(x * 1e-3, y, c).item() == pytest.approx(loss.item(), rel=1e-10)
    assert md.MagnetLoss()(x + 1e4, y, c).item() == pytest.approx(loss.item(), rel=1e-6)


def test_batch_order_and_cluster_id_invariance():
    x, y, c = random_batch(5, labels=[0, 1, 1, 2, 3, 3])
    per_example = md.MagnetLoss(reduction="none")(x, y, c)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    relabelled = c * 17 + 1000  # arbitrary, non-contiguous ids
    shuffled = md.MagnetLoss(reduction="none")(x[perm], y[perm], relabelled[perm])
    torch.testing.assert_close(shuffled, per_example[perm])


def test_float32_agrees_with_float64_and_half_is_computed_in_float32():
    x, y, c = random_batch(6)
    loss64 = md.MagnetLoss()(x, y, c)
    loss32 = md.MagnetLoss()(x.float(), y, c)
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(loss64.item(), rel=1e-5)
    half = md.MagnetLoss()(x.half(), y, c)
    assert half.dtype == torch.float32 and math.isfinite(half.item())
    assert half.item() == pytest.approx(loss64.item(), rel=1e-2)


def test_no_cap_and_live_gradient_when_classes_overlap():
    """Copies that compute exp(-own - alpha) / (sum exp + eps) underflow in float32 and cap
    the loss near -log(eps) = 18.4 with zero gradient; log space keeps both."""
    x, y, c = random_batch(7, clusters=2, per_cluster=4, dim=3, dtype=torch.float32)
    x = torch.cat([x[:4], x[:4] + 0.01 * x[4:]])  # the impostor cluster sits on the seed
    x.requires_grad_(True)
    loss = md.MagnetLoss(alpha=120.0)(x, y, c)
    loss.backward()
    assert 110.0 < loss.item() < 130.0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_class_clusters_are_neither_numerator_nor_denominator():
    x, y, c = random_batch(8, clusters=4, labels=[0, 0, 1, 1])
    # Moving the second cluster of class 0 must not change the loss of class 0's first cluster
    # through the denominator (it moves the variance, so compare with a fixed variance).
    moved = x.clone()
    moved[4:8] += 3.0
    a = md.MagnetLoss(reduction="none", variance=1.0)(x, y, c)[:4]
    b = md.MagnetLoss(reduction="none", variance=1.0)(moved, y, c)[:4]
    torch.testing.assert_close(a, b)


def test_reduces_to_symmetrised_triplet_without_variance_standardisation():
    """Paper §3.4: M=2, D=2, no variance standardisation (1/(2 s2) = 1)."""
    a, p, n1, n2 = torch.randn(
        4, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    x = torch.stack([a, p, n1, n2])
    labels = torch.tensor([0, 0, 1, 1])
    losses = md.MagnetLoss(alpha=1.0, reduction="none", variance=0.5)(x, labels, labels)
    n = (n1 + n2) / 2
    for anchor, positive, loss in ((a, p, losses[0]), (p, a, losses[1])):
        triplet = torch.clamp(
            ((anchor - positive) ** 2).sum() / 4 + 1.0 - ((anchor - n) ** 2).sum(), min=0
        )
        torch.testing.assert_close(loss, triplet)


def test_exposes_batch_variance():
    x, y, c = random_batch(10)
    loss_fn = md.MagnetLoss()
    loss_fn(x, y, c)
    expected = magnet_loss_terms(x, y, c).variance
    centred = x - torch.stack([x[c == k].mean(0) for k in c.tolist()])
    reference_variance = (centred**2).sum() / (len(x) - 1)
    torch.testing.assert_close(loss_fn.last_variance, reference_variance)
    torch.testing.assert_close(expected, reference_variance)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda x, y, c: (x[::2], y[::2], c[::2] * 0 + torch.arange(len(c[::2]))), ">= 2 examples"),
        (lambda x, y, c: (x, y * 0, c), "at least two classes"),
        (lambda x, y, c: (x, y[:-1], c), "one entry per embedding"),
        (lambda x, y, c: (x[0], y, c), r"shape \(B, D\)"),
        (lambda x, y, c: (x.masked_fill(x > 1.5, float("nan")), y, c), "finite"),
        (lambda x, y, c: (x, y.double(), c), "integers"),
        (lambda x, y, c: (x, torch.arange(len(y)) % 3, c), "exactly one label"),
        (lambda x, y, c: (x * 0, y, c), "variance s2 is 0"),
    ],
)
def test_errors_name_the_problem(make, match):
    x, y, c = random_batch(11)
    with pytest.raises((ValueError, TypeError), match=match):
        md.MagnetLoss()(*make(x, y, c))


def test_bad_parameters():
    with pytest.raises(ValueError, match="reduction must be one of"):
        md.MagnetLoss(reduction="avg")
    with pytest.raises(TypeError, match="alpha must be a real number"):
        md.MagnetLoss(alpha="1")
    with pytest.raises(ValueError, match=r"scale must be > 0.0 \(the inverse temperature"):
        md.MagnetLoss(scale=0.0)
    with pytest.raises(ValueError, match="scale must be finite"):
        md.MagnetLoss(scale=float("inf"))
