"""Cluster-NCA (paper §3.1) against a from-scratch loop of its literal -log ratio."""

import math

import pytest
import torch

from magnetdml.losses import ClusterNCALoss, MagnetLoss, loss_spec


def _batch(seed=0, cluster_labels=(0, 0, 1, 2, 2, 3), per_cluster=3, dim=4):
    g = torch.Generator().manual_seed(seed)
    n = len(cluster_labels) * per_cluster
    clusters = torch.arange(len(cluster_labels)).repeat_interleave(per_cluster) * 10 + 3
    perm = torch.randperm(n, generator=g)  # any ids, any order
    labels = torch.tensor(cluster_labels).repeat_interleave(per_cluster)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, labels[perm], clusters[perm]


def _reference(x, labels, clusters, variance=None, scale=1.0):
    """l_n = -log(exp(-own) / (exp(-own) + sum_{other-class m} exp(-s d_nm / 2 s2)))."""
    rows = [[float(v) for v in row] for row in x]
    lab, cl = labels.tolist(), clusters.tolist()
    ids = sorted(set(cl))
    members = {c: [n for n in range(len(rows)) if cl[n] == c] for c in ids}
    means = {
        c: [sum(rows[n][k] for n in members[c]) / len(members[c]) for k in range(len(rows[0]))]
        for c in ids
    }
    label_of = {c: lab[members[c][0]] for c in ids}
    sq = [math.dist(rows[n], means[cl[n]]) ** 2 for n in range(len(rows))]
    s2 = sum(sq) / (len(rows) - 1) if variance is None else variance
    losses = []
    for n in range(len(rows)):
        own = math.exp(-scale * sq[n] / (2 * s2))
        others = sum(
            math.exp(-scale * math.dist(rows[n], means[c]) ** 2 / (2 * s2))
            for c in ids
            if label_of[c] != lab[n]
        )
        losses.append(-math.log(own / (own + others)))
    return losses, s2


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("variance", [None, 0.5])
@pytest.mark.parametrize("scale", [1.0, 3.52])
def test_matches_literal_ratio(seed, variance, scale):
    x, labels, clusters = _batch(seed)
    expected, s2 = _reference(x, labels, clusters, variance, scale)
    loss_fn = ClusterNCALoss(reduction="none", variance=variance, scale=scale)
    torch.testing.assert_close(
        loss_fn(x, labels, clusters), torch.tensor(expected, dtype=torch.float64)
    )
    assert math.isclose(float(loss_fn.last_variance), s2, rel_tol=1e-12)
    mean = ClusterNCALoss(variance=variance, scale=scale)(x, labels, clusters)
    assert math.isclose(float(mean), sum(expected) / len(expected), rel_tol=1e-12)


def test_is_magnet_without_hinge_and_margin():
    # softplus(z) - relu(z) = log(1 + exp(-|z|)) lies in (0, log 2] for Magnet's z at alpha 0.
    x, labels, clusters = _batch(2)
    nca = ClusterNCALoss(reduction="none")(x, labels, clusters)
    magnet = MagnetLoss(alpha=0.0, reduction="none")(x, labels, clusters)
    gap = nca - magnet
    assert bool((gap > 0).all()) and bool((gap <= math.log(2) + 1e-12).all())


def test_scale_invariance_gradcheck_and_half_input():
    x, labels, clusters = _batch(3)
    loss_fn = ClusterNCALoss()
    torch.testing.assert_close(loss_fn(x * 100.0, labels, clusters), loss_fn(x, labels, clusters))
    assert loss_fn(x.half(), labels, clusters).dtype == torch.float32
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels, clusters), (x,))


def test_errors_are_magnets():
    x, labels, clusters = _batch()
    with pytest.raises(ValueError, match="at least two classes"):
        ClusterNCALoss()(x, torch.zeros_like(labels), clusters)
    with pytest.raises(ValueError, match="examples_per_cluster >= 2"):
        ClusterNCALoss()(x[:4], labels[:4], torch.arange(4))
    with pytest.raises(ValueError, match="variance must be > 0.0; got 0.0"):
        ClusterNCALoss(variance=0.0)
    assert loss_spec("cluster_nca").uses_index is True
