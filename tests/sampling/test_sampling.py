"""NeighbourhoodSampler: layout, loss-proportional seeding, replacement, resume, ranks."""

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from torch.utils.data import DataLoader, TensorDataset

from magnetdml.clustering import ClusterIndex
from magnetdml.sampling import NeighbourhoodSampler


def make_index(n_classes=6, per_class=40, k=3, dim=5, seed=0, tiny_class=False):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    x = rng.standard_normal((y.size, dim)) + 3 * rng.standard_normal((n_classes, dim))[y]
    if tiny_class:  # a class of 5 examples in 3 clusters: some cluster has < 4 members
        x = np.concatenate([x, rng.standard_normal((5, dim))])
        y = np.concatenate([y, np.full(5, n_classes)])
    return ClusterIndex(clusters_per_class=k, seed=seed).fit(x.astype(np.float32), y)


def blocks(index, batch, d):
    """Cluster id of each block of d consecutive indices (asserting each block is one)."""
    clusters = index.assignments_[np.asarray(batch)].reshape(-1, d)
    assert (clusters == clusters[:, :1]).all()
    return clusters[:, 0]


def test_batch_layout_seed_first_then_nearest_impostors():
    index = make_index()
    sampler = NeighbourhoodSampler(index, clusters_per_batch=5, examples_per_cluster=4, seed=1)
    assert len(sampler) == index.assignments_.size // 20
    for batch in sampler:
        assert len(batch) == 20 and all(isinstance(i, int) for i in batch)
        order = blocks(index, batch, 4)
        seed = order[0]
        np.testing.assert_array_equal(order[1:], index.nearest_impostors(seed, 4))
        assert (index.centroid_labels_[order[1:]] != index.centroid_labels_[seed]).all()
        for b in range(5):  # no repeats inside a block unless the cluster is too small
            size = index.cluster_sizes_[order[b]]
            assert len(set(batch[4 * b : 4 * b + 4])) == min(4, size)
    assert sampler.stats()["batches"] == len(sampler)


def test_len_and_dataloader_protocol():
    index = make_index()
    n = index.assignments_.size
    assert len(NeighbourhoodSampler(index, 2, 2)) == n // 4
    assert len(NeighbourhoodSampler(index, 2, 2, num_replicas=2)) == n // 8
    sampler = NeighbourhoodSampler(index, 3, 2, batches_per_epoch=7)
    data = TensorDataset(torch.arange(n))
    got = [b[0] for b in DataLoader(data, batch_sampler=sampler)]
    assert len(got) == 7 and all(b.shape == (6,) for b in got)


def test_seeded_streams_are_reproducible_and_differ_across_seeds():
    index = make_index()
    a = [b for _ in range(2) for b in NeighbourhoodSampler(index, 4, 3, seed=5)]
    b = [b for _ in range(2) for b in NeighbourhoodSampler(index, 4, 3, seed=5)]
    c = list(NeighbourhoodSampler(index, 4, 3, seed=6))
    assert a == b
    assert a[: len(c)] != c
    # a second epoch continues the stream rather than repeating it
    sampler = NeighbourhoodSampler(index, 4, 3, seed=5)
    assert list(sampler) != list(sampler)


@pytest.mark.slow
def test_seed_frequency_is_proportional_to_cluster_loss():
    index = make_index(seed=2)
    sampler = NeighbourhoodSampler(index, 2, 2, batches_per_epoch=20000, seed=3)
    weight = np.random.default_rng(0).uniform(0.2, 3.0, index.n_clusters_)
    everyone = np.arange(index.assignments_.size)
    sampler.update_losses(everyone, weight[index.assignments_])
    np.testing.assert_allclose(sampler.cluster_weights(), weight)
    for _ in sampler:
        pass
    observed = sampler.stats()["seed_counts"]
    expected = 20000 * weight / weight.sum()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < scipy_stats.chi2.ppf(0.999, index.n_clusters_ - 1)
    uniform = np.full(index.n_clusters_, 20000 / index.n_clusters_)
    assert ((observed - uniform) ** 2 / uniform).sum() > 10 * chi2  # the test can tell


def test_zero_loss_clusters_are_never_seeded_but_unmeasured_ones_are():
    index = make_index(seed=4)
    sampler = NeighbourhoodSampler(index, 2, 2, batches_per_epoch=3000, seed=0)
    c = index.n_clusters_
    zero, hot = np.arange(0, c // 3), np.arange(c // 3, 2 * c // 3)
    for cluster, value in [(zero, 0.0), (hot, 2.0)]:
        members = np.flatnonzero(np.isin(index.assignments_, cluster))
        sampler.update_losses(members, np.full(members.size, value))
    weights = sampler.cluster_weights()
    assert (weights[zero] == 0).all()
    assert weights[2 * c // 3 :] == pytest.approx(1.0)  # prior: mean of measured means
    list(sampler)
    seeded = sampler.stats()["seed_counts"]
    assert seeded[zero].sum() == 0
    assert (seeded[2 * c // 3 :] > 0).all()
    # every measured loss 0: uniform
    sampler.update_losses(np.arange(index.assignments_.size), np.zeros(index.assignments_.size))
    sampler.reset_stats()
    list(sampler)
    assert (sampler.stats()["seed_counts"] > 0).all()


def test_replacement_only_for_small_clusters_and_counted():
    index = make_index(tiny_class=True)
    small = set(np.flatnonzero(index.cluster_sizes_ < 4).tolist())
    assert small
    sampler = NeighbourhoodSampler(index, 12, 4, batches_per_epoch=300, seed=2)
    expected = 0
    for batch in sampler:
        for b, cluster in enumerate(blocks(index, batch, 4)):
            block = batch[4 * b : 4 * b + 4]
            if cluster in small:
                expected += 1
                assert set(block) == set(index.members(cluster).tolist())  # all members used
            else:
                assert len(set(block)) == 4
    assert expected > 0
    assert sampler.stats()["draws_with_replacement"] == expected


def brute_force_cluster_means(index, cache):
    means = {}
    for c in range(index.n_clusters_):
        values = [cache[i] for i in index.members(c) if i in cache]
        if values:
            means[c] = sum(values) / len(values)
    return means


def test_update_losses_handles_duplicates_and_tracks_cluster_means():
    index = make_index(seed=6)
    sampler = NeighbourhoodSampler(index, 3, 2, seed=0)
    rng = np.random.default_rng(1)
    cache = {}
    for step in range(30):
        idx = rng.integers(0, index.assignments_.size, 25)  # duplicates likely
        loss = rng.uniform(0, 5, 25)
        per_index = {}
        for i, value in zip(idx.tolist(), loss.tolist(), strict=True):
            per_index.setdefault(i, []).append(value)
        cache.update({i: sum(v) / len(v) for i, v in per_index.items()})
        sampler.update_losses(
            torch.from_numpy(idx) if step % 2 else idx, torch.from_numpy(loss) if step % 2 else loss
        )
    means = brute_force_cluster_means(index, cache)
    weights = sampler.cluster_weights()
    prior = np.mean(list(means.values()))
    for c in range(index.n_clusters_):
        assert weights[c] == pytest.approx(means.get(c, prior))
    assert sampler.stats()["measured_examples"] == len(cache)


def test_set_index_recomputes_cluster_losses_for_new_clusters():
    index = make_index(seed=7)
    sampler = NeighbourhoodSampler(index, 3, 2, seed=0)
    rng = np.random.default_rng(2)
    idx = rng.choice(index.assignments_.size, 60, replace=False)
    loss = rng.uniform(0, 4, 60)
    sampler.update_losses(idx, loss)
    x = rng.standard_normal((index.assignments_.size, 5)).astype(np.float32)
    labels = index.centroid_labels_[index.assignments_]
    new = ClusterIndex(clusters_per_class=5, seed=1).fit(x, labels)
    sampler.set_index(new)
    means = brute_force_cluster_means(new, dict(zip(idx.tolist(), loss.tolist(), strict=True)))
    prior = np.mean(list(means.values()))
    weights = sampler.cluster_weights()
    assert weights.shape == (new.n_clusters_,)
    for c in range(new.n_clusters_):
        assert weights[c] == pytest.approx(means.get(c, prior))
    assert all(len(b) == 6 for b in sampler)


def test_state_dict_resume_continues_the_same_stream():
    index = make_index(seed=8)
    rng = np.random.default_rng(0)

    def run(sampler, steps):
        out = []
        for _ in range(steps):
            batch = sampler.next_batch()
            out.append(batch)
            sampler.update_losses(batch, rng.uniform(0, 2, len(batch)))
        return out

    original = NeighbourhoodSampler(index, 4, 2, seed=9)
    run(original, 10)
    state = original.state_dict()
    rng_state = rng.bit_generator.state
    expected = run(original, 15)
    resumed = NeighbourhoodSampler(index, 4, 2, seed=9)
    resumed.load_state_dict(state)
    rng.bit_generator.state = rng_state
    assert run(resumed, 15) == expected
    assert resumed.stats()["batches"] == 25
    with pytest.raises(ValueError, match="state does not match.*examples_per_cluster"):
        NeighbourhoodSampler(index, 4, 3, seed=9).load_state_dict(state)


def test_ranks_never_share_a_seed_cluster_and_keep_in_step():
    index = make_index(seed=10)
    ranks = [NeighbourhoodSampler(index, 3, 2, seed=4, num_replicas=2, rank=r) for r in (0, 1)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        batches = [s.next_batch() for s in ranks]
        seeds = [index.assignments_[b[0]] for b in batches]
        assert seeds[0] != seeds[1]
        gathered = np.concatenate(batches)
        losses = rng.uniform(0, 1, gathered.size)
        for s in ranks:  # the training loop all-gathers and updates every rank
            s.update_losses(gathered, losses)
    np.testing.assert_array_equal(ranks[0].cluster_weights(), ranks[1].cluster_weights())


def test_errors_name_the_parameter_and_the_fix():
    index = make_index()
    with pytest.raises(ValueError, match=r"examples_per_cluster must be >= 2 \(the variance"):
        NeighbourhoodSampler(index, 4, 1)
    with pytest.raises(ValueError, match="clusters_per_batch must be >= 2"):
        NeighbourhoodSampler(index, 1, 4)
    with pytest.raises(
        ValueError,
        match=r"needs 16 impostor clusters.*class 0 has only 15"
        r".*clusters_per_batch to <= 16",
    ):
        NeighbourhoodSampler(index, 17, 2)
    with pytest.raises(ValueError, match="rank must be < num_replicas"):
        NeighbourhoodSampler(index, 4, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="index must be a fitted ClusterIndex"):
        NeighbourhoodSampler(ClusterIndex(), 4, 2)
    sampler = NeighbourhoodSampler(index, 4, 2)
    with pytest.raises(ValueError, match="one loss per index"):
        sampler.update_losses([1, 2, 3], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite and >= 0"):
        sampler.update_losses([1, 2], [0.5, -1.0])
    with pytest.raises(ValueError, match=r"batch_indices must lie in \[0, 240\)"):
        sampler.update_losses([1, 240], [0.5, 1.0])


def test_more_ranks_than_positive_clusters_still_gives_distinct_seeds():
    index = make_index(seed=11)
    ranks = [NeighbourhoodSampler(index, 2, 2, seed=1, num_replicas=3, rank=r) for r in range(3)]
    loss = (index.assignments_ == 4).astype(float)  # only cluster 4 has a positive loss
    for s in ranks:
        s.update_losses(np.arange(loss.size), loss)
    for _ in range(50):
        seeds = [index.assignments_[s.next_batch()[0]] for s in ranks]
        assert len(set(seeds)) == 3 and seeds[0] == 4  # the only positive one comes first


def test_random_impostors_are_distinct_clusters_of_other_classes_drawn_uniformly():
    """The ablation: M - 1 distinct impostor clusters of other classes, uniformly (every
    impostor cluster about equally often), where the paper's sampler takes the nearest."""
    index = make_index(n_classes=6, k=3)
    sampler = NeighbourhoodSampler(
        index, clusters_per_batch=5, examples_per_cluster=2, seed=3, impostors="random"
    )
    counts = np.zeros(index.n_clusters_)
    not_nearest = 0
    for _ in range(600):
        order = blocks(index, sampler.next_batch(), 2)
        seed, impostors = order[0], order[1:]
        assert len(set(impostors)) == 4
        assert (index.centroid_labels_[impostors] != index.centroid_labels_[seed]).all()
        not_nearest += set(impostors) != set(index.nearest_impostors(seed, 4))
        counts[impostors] += 1
    assert not_nearest > 500
    expected = counts.sum() / index.n_clusters_
    assert scipy_stats.chisquare(counts, np.full(index.n_clusters_, expected)).pvalue > 1e-3


def test_the_impostor_rule_is_part_of_the_resumable_state():
    index = make_index(seed=8)
    state = NeighbourhoodSampler(index, 4, 2, seed=9, impostors="random").state_dict()
    with pytest.raises(ValueError, match="state does not match.*impostors saved random"):
        NeighbourhoodSampler(index, 4, 2, seed=9).load_state_dict(state)
    with pytest.raises(ValueError, match="impostors must be one of 'nearest', 'random'"):
        NeighbourhoodSampler(index, 4, 2, impostors="farthest")


def test_distinct_seed_clusters_survive_a_refresh_until_the_stats_are_reset():
    """The epoch-end refresh comes before the epoch's record: its seeds must still count."""
    index = make_index(seed=3)
    sampler = NeighbourhoodSampler(index, 3, 2, seed=0)
    for _ in range(10):
        sampler.next_batch()
    before = sampler.stats()["distinct_seed_clusters"]
    assert before == int((sampler.stats()["seed_counts"] > 0).sum()) > 0
    sampler.set_index(
        index.refresh(
            index.centroids_[index.assignments_], index.centroid_labels_[index.assignments_]
        )
    )
    assert sampler.stats()["distinct_seed_clusters"] == before
    sampler.next_batch()
    assert sampler.stats()["distinct_seed_clusters"] == before + 1
    state = sampler.state_dict()
    twin = NeighbourhoodSampler(index, 3, 2, seed=0)
    twin.load_state_dict(state)
    assert twin.stats()["distinct_seed_clusters"] == before + 1
    sampler.reset_stats()
    assert sampler.stats()["distinct_seed_clusters"] == 0
