"""UniformSampler: shuffled passes cut into batches, the softmax baseline's standard protocol."""

import json

import numpy as np
import pytest

from magnetdml.sampling import UniformSampler


def test_each_pass_is_a_permutation_cut_into_batches_and_the_tail_is_dropped():
    y = np.arange(103) % 7
    sampler = UniformSampler(y, batch_size=10, batches_per_epoch=20, seed=0)
    batches = list(sampler)
    assert all(len(b) == 10 for b in batches)
    for first in (0, 10):  # 10 full batches per pass of 103; 3 dropped
        seen = np.concatenate(batches[first : first + 10])
        assert len(set(seen.tolist())) == 100 and seen.max() < 103
    assert batches[:10] != batches[10:]  # a fresh permutation each pass
    assert sampler.stats() == {"batches": 20, "passes_started": 1}
    assert len(UniformSampler(y, batch_size=10)) == 10


def test_many_classes_give_batches_of_mostly_distinct_classes():
    """The point of the sampler: with 900 classes a batch of 48 holds ~47 classes, where
    the class-balanced sampler holds P."""
    y = np.repeat(np.arange(900), 12)
    sampler = UniformSampler(y, batch_size=48, batches_per_epoch=50, seed=3)
    distinct = [len(set(y[b].tolist())) for b in sampler]
    assert np.mean(distinct) > 45


def test_reproducible_resumable_mid_pass_and_seed_dependent():
    y = np.arange(50) % 5
    a = UniformSampler(y, batch_size=8, seed=4)
    first = [a.next_batch() for _ in range(7)]  # crosses a pass boundary (6 per pass)
    state = json.loads(json.dumps(a.state_dict()))  # plain python, as checkpoints hold it
    rest = [a.next_batch() for _ in range(9)]
    again = UniformSampler(y, batch_size=8, seed=4)
    assert [again.next_batch() for _ in range(7)] == first
    b = UniformSampler(y, batch_size=8, seed=4)
    b.load_state_dict(state)
    assert [b.next_batch() for _ in range(9)] == rest
    other = UniformSampler(y, 8, seed=5)
    assert [other.next_batch() for _ in range(7)] != first
    with pytest.raises(ValueError, match="state does not match.*seed saved 4 vs 5"):
        UniformSampler(y, 8, seed=5).load_state_dict(state)


def test_ranks_take_disjoint_slices_of_one_global_batch():
    y = np.arange(64) % 4
    ranks = [UniformSampler(y, batch_size=8, seed=2, num_replicas=2, rank=r) for r in (0, 1)]
    single = UniformSampler(y, batch_size=16, seed=2)
    for _ in range(6):
        a, b = (r.next_batch() for r in ranks)
        assert not set(a) & set(b)
        assert a + b == single.next_batch()
    assert len(ranks[0]) == 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"batch_size": 40}, r"batch_size x processes must be <= the 30 training examples; got 40"),
        ({"batch_size": 20, "num_replicas": 2}, r"got 20 x 2 \(lower the batch size\)"),
        ({"batch_size": 4, "batches_per_epoch": 0}, "batches_per_epoch must be >= 1"),
    ],
)
def test_bad_parameters_name_the_rule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UniformSampler(np.arange(30) % 3, **kwargs)
