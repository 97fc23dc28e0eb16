"""ClassBalancedSampler: P classes x K examples, replacement only for small classes."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from magnetdml.sampling import ClassBalancedSampler


def labels_with_a_small_class():
    return np.concatenate([np.repeat(np.arange(8), 20), [99, 99]])  # class 99: 2 examples


def test_batches_hold_p_distinct_classes_of_k_examples():
    y = labels_with_a_small_class()
    sampler = ClassBalancedSampler(y, classes_per_batch=4, examples_per_class=3, seed=0)
    assert len(sampler) == y.size // 12
    expected_small = 0
    for batch in sampler:
        assert len(batch) == 12
        blocks = np.asarray(batch).reshape(4, 3)
        classes = y[blocks]
        assert (classes == classes[:, :1]).all()
        assert len(set(classes[:, 0])) == 4
        for block, label in zip(blocks, classes[:, 0], strict=True):
            if label == 99:
                expected_small += 1
                assert set(block) == {160, 161}
            else:
                assert len(set(block)) == 3
    assert sampler.stats()["draws_with_replacement"] == expected_small


def test_every_class_is_drawn_about_equally_often():
    y = np.repeat(np.arange(10), np.arange(1, 11) * 10)  # imbalanced classes
    sampler = ClassBalancedSampler(y, 2, 2, batches_per_epoch=5000, seed=1)
    counts = np.bincount(y[[b[0] for b in sampler] + [b[2] for b in sampler]], minlength=10)
    # two passes draw 20k classes: ~2000 each, whatever the class size
    assert np.abs(counts - counts.mean()).max() < 0.1 * counts.mean()


def test_reproducible_resumable_and_seed_dependent():
    y = labels_with_a_small_class()
    a = ClassBalancedSampler(y, 3, 2, seed=4)
    first = [a.next_batch() for _ in range(5)]
    state = a.state_dict()
    rest = [a.next_batch() for _ in range(5)]
    b = ClassBalancedSampler(y, 3, 2, seed=4)
    assert [b.next_batch() for _ in range(5)] == first
    c = ClassBalancedSampler(y, 3, 2, seed=4)
    c.load_state_dict(state)
    assert [c.next_batch() for _ in range(5)] == rest
    assert list(ClassBalancedSampler(y, 3, 2, seed=5))[:5] != first
    with pytest.raises(ValueError, match="state does not match.*seed saved 4 vs 5"):
        ClassBalancedSampler(y, 3, 2, seed=5).load_state_dict(state)


def test_ranks_draw_disjoint_classes_when_there_are_enough():
    y = np.repeat(np.arange(12), 5)
    ranks = [ClassBalancedSampler(y, 3, 2, seed=2, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == 60 // 12
    for _ in range(100):
        c0, c1 = (set(y[s.next_batch()]) for s in ranks)
        assert len(c0) == 3 and not c0 & c1


def test_dataloader_protocol_and_torch_labels():
    y = torch.arange(6).repeat_interleave(4)
    sampler = ClassBalancedSampler(y, 2, 4, batches_per_epoch=3)
    batches = [b[0] for b in DataLoader(TensorDataset(y), batch_sampler=sampler)]
    assert len(batches) == 3 and all(b.shape == (8,) for b in batches)


def test_errors_name_the_parameter_and_the_fix():
    y = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError, match=r"examples_per_class must be >= 2 \(a positive pair"):
        ClassBalancedSampler(y, 2, 1)
    with pytest.raises(ValueError, match=r"classes_per_batch must be >= 2 \(negatives"):
        ClassBalancedSampler(y, 1, 2)
    with pytest.raises(ValueError, match="classes_per_batch must be <= the 3 classes"):
        ClassBalancedSampler(y, 4, 2)
    with pytest.raises(ValueError, match="rank must be < num_replicas"):
        ClassBalancedSampler(y, 2, 2, num_replicas=2, rank=3)
    with pytest.raises(TypeError, match="labels must hold integers"):
        ClassBalancedSampler(np.array([0.5, 1.5]), 2, 2)
