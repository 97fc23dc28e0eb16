"""Miners against brute-force Python-loop references on small random batches."""

import math

import pytest
import torch

from magnetdml.losses.miners import (
    MINERS,
    all_triplets,
    batch_hard,
    check_batch,
    mine,
    nearest_impostors,
    pairwise_distances,
    semi_hard,
)


def _batch(seed=0, classes=(0, 0, 0, 1, 1, 2, 2, 2, 2, 3)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(classes), 5, generator=g, dtype=torch.float64)
    labels = torch.tensor(classes)
    # Shuffle so that classes are not contiguous: miners must not rely on the layout.
    perm = torch.randperm(len(classes), generator=g)
    return x[perm], labels[perm]


def _distances_loop(x):
    n = x.shape[0]
    return torch.tensor(
        [[math.dist(x[i].tolist(), x[j].tolist()) for j in range(n)] for i in range(n)],
        dtype=torch.float64,
    )


def _valid(labels):
    n, lab = len(labels), labels.tolist()
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if a != p and lab[a] == lab[p] and lab[q] != lab[a]
    ]


def _as_set(triplets):
    return set(zip(*(t.tolist() for t in triplets), strict=True))


def test_pairwise_distances_match_loop_far_from_origin_and_have_finite_gradients():
    x, _ = _batch()
    x = torch.cat([x, x[:2]]) + 1000.0  # centring keeps the expanded form accurate here
    d = pairwise_distances(x, squared=False)
    torch.testing.assert_close(d, _distances_loop(x), atol=1e-6, rtol=1e-9)
    torch.testing.assert_close(
        pairwise_distances(x, squared=True), _distances_loop(x) ** 2, atol=1e-6, rtol=1e-9
    )
    assert bool((d.diagonal() == 0).all())
    y = torch.cat([x, x[:2]]).float().requires_grad_(True)  # duplicated rows: d = 0
    pairwise_distances(y, squared=False).sum().backward()
    assert bool(torch.isfinite(y.grad).all())


def test_all_triplets_is_every_valid_triplet():
    _, labels = _batch()
    triplets = all_triplets(labels)
    assert _as_set(triplets) == set(_valid(labels))
    assert len(triplets.anchors) == len(_valid(labels))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_matches_loop(seed):
    x, labels = _batch(seed)
    d, lab = _distances_loop(x), labels.tolist()
    expected = set()
    for a in range(len(lab)):
        pos = [p for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        neg = [q for q in range(len(lab)) if lab[q] != lab[a]]
        if pos and neg:
            expected.add((a, max(pos, key=lambda p: d[a, p]), min(neg, key=lambda q: d[a, q])))
    assert _as_set(batch_hard(labels, pairwise_distances(x, squared=True))) == expected


@pytest.mark.parametrize("seed", [3, 6])
@pytest.mark.parametrize("margin", [None, 0.5, 2.0])
def test_semi_hard_matches_loop(margin, seed):
    x, labels = _batch(seed)
    d = _distances_loop(x)
    expected = set()
    by_pair = {}
    for a, p, q in _valid(labels):
        inside = d[a, q] > d[a, p] and (margin is None or d[a, q] < d[a, p] + margin)
        if inside:
            by_pair.setdefault((a, p), []).append(q)
    for (a, p), negatives in by_pair.items():
        expected.add((a, p, min(negatives, key=lambda q: d[a, q])))
    got = semi_hard(labels, pairwise_distances(x, squared=False), margin)
    assert _as_set(got) == expected and len(got.anchors) == len(expected)
    if margin == 0.5:  # the test batch exercises the window: it drops some pairs, not all
        unbounded = semi_hard(labels, pairwise_distances(x, squared=False), None)
        assert 0 < len(expected) < len(unbounded.anchors)


@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.5, 1.0])
def test_nearest_impostors_matches_loop(fraction):
    x, labels = _batch(4)
    d, lab = _distances_loop(x), labels.tolist()
    expected = set()
    for a in range(len(lab)):
        neg = sorted((q for q in range(len(lab)) if lab[q] != lab[a]), key=lambda q: d[a, q])
        kept = neg[: max(1, math.ceil(fraction * len(neg)))]
        expected |= {
            (a, p, q) for p in range(len(lab)) if p != a and lab[p] == lab[a] for q in kept
        }
    got = nearest_impostors(labels, pairwise_distances(x, squared=True), fraction)
    assert _as_set(got) == expected and len(got.anchors) == len(expected)
    if fraction == 1.0:
        assert expected == set(_valid(labels))


def test_mine_dispatches_and_rejects_unknown_miner():
    x, labels = _batch(5)
    d = pairwise_distances(x, squared=True)
    assert _as_set(mine("batch_hard", labels, d)) == _as_set(batch_hard(labels, d))
    assert _as_set(mine("all", labels, d)) == _as_set(all_triplets(labels))
    assert set(MINERS) == {"all", "batch_hard", "semi_hard", "nearest_impostors"}
    with pytest.raises(ValueError, match="miner must be one of .*'batch_hard'.*got 'hardest'"):
        mine("hardest", labels, d)


def test_miners_on_singletons_give_no_triplet():
    labels = torch.tensor([0, 1, 2, 3])
    d = pairwise_distances(
        torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), squared=True
    )
    for name in MINERS:
        assert mine(name, labels, d, impostor_fraction=0.5).anchors.numel() == 0


def test_check_batch_errors_name_the_problem():
    x = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="embeddings must be a floating-point"):
        check_batch(torch.zeros(4, 3, dtype=torch.long), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"embeddings must have shape \(B, E\).*\(4,\)"):
        check_batch(torch.zeros(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(TypeError, match="labels must hold integers"):
        check_batch(x, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="one entry per embedding .B=4.; got 3"):
        check_batch(x, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="must be finite"):
        check_batch(torch.tensor([[float("nan")], [0.0]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least 2 classes.*got 1.*two classes per batch"):
        check_batch(x, torch.tensor([7, 7, 7, 7]))
