"""md.MagnetTraining: Magnet Loss in a user's own loop, and the example that shows it."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import magnetdml as md

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_loop.py"


def _data(n_classes=4, per_class=30, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    points = (
        rng.standard_normal((labels.size, dim)) + 4 * rng.standard_normal((n_classes, dim))[labels]
    )
    return points.astype(np.float32), labels


def test_loss_is_magnet_loss_and_feeds_the_sampler_and_sigma2():
    points, labels = _data()
    magnet = md.MagnetTraining(
        labels,
        clusters_per_class=2,
        clusters_per_batch=3,
        examples_per_cluster=4,
        alpha=1.5,
        scale=2.0,
        variance_momentum=0.5,
    )
    magnet.refresh(points)
    batch = next(magnet.batches(1))
    embeddings = torch.tensor(points[batch], requires_grad=True)
    loss = magnet.loss(embeddings, batch)
    reference = md.MagnetLoss(alpha=1.5, scale=2.0)(
        embeddings,
        torch.as_tensor(labels[batch]),
        torch.as_tensor(magnet.index.assignments_[batch]),
    )
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert embeddings.grad is not None
    first = magnet.sigma2
    magnet.loss(torch.tensor(points[batch]), batch)
    assert magnet.sigma2 == pytest.approx(0.5 * first + 0.5 * first)  # same batch again
    assert magnet.sampler.stats()["measured_examples"] == len(set(batch))


def test_refresh_moves_the_sampler_to_the_new_clusters():
    points, labels = _data()
    magnet = md.MagnetTraining(
        labels, clusters_per_class=2, clusters_per_batch=3, examples_per_cluster=4
    )
    magnet.refresh(points)
    batch = next(magnet.batches(1))
    magnet.loss(torch.tensor(points[batch]), batch)
    moved = points + np.random.default_rng(1).standard_normal(points.shape).astype(np.float32)
    magnet.refresh(moved)
    assert magnet.sampler.index is magnet.index and magnet.refreshes == 2
    assert magnet.sampler.cluster_weights().shape == (magnet.index.n_clusters_,)
    for batch in magnet.batches(5):  # every block of D examples is one *new* cluster
        blocks = magnet.index.assignments_[np.asarray(batch)].reshape(3, 4)
        assert (blocks == blocks[:, :1]).all()


def test_classifier_uses_the_lengthscale_of_the_temperature():
    points, labels = _data()
    magnet = md.MagnetTraining(labels, clusters_per_class=1, clusters_per_batch=3, scale=4.0)
    magnet.refresh(points)
    batch = next(magnet.batches(1))
    magnet.loss(torch.tensor(points[batch]), batch)
    assert magnet.classifier().lengthscale_ == pytest.approx(magnet.sigma2 / 4.0)
    assert np.mean(magnet.classifier().predict(points) != labels) < 0.05


def test_misuse_is_one_clear_error():
    points, labels = _data()
    magnet = md.MagnetTraining(labels)
    with pytest.raises(ValueError, match=r"call refresh\(embeddings of the training set\)"):
        next(magnet.batches(1))
    with pytest.raises(ValueError, match="needs the embeddings of all 120 training examples"):
        magnet.refresh(points[:10])
    magnet.refresh(points)
    with pytest.raises(ValueError, match="no sigma"):
        magnet.classifier()
    with pytest.raises(ValueError, match="indices must name the 2 embedded examples"):
        magnet.loss(torch.tensor(points[:2]), [0, 1, 2])


def test_the_own_loop_example_learns():
    example = runpy.run_path(str(EXAMPLE))
    error = example["main"](epochs=5, steps_per_epoch=30)
    assert error < 0.15, error  # chance is 0.9


def test_sigma2_is_one_running_average_with_the_trainers_defaults():
    """sigma^2 is tracked in one place (training.sigma2) with one default, the config's, as
    are the helper's other defaults (K, M, D, L)."""
    from magnetdml.training.config import Config
    from magnetdml.training.sigma2 import RunningSigma2

    running, slow = RunningSigma2(), None
    for s2 in (2.0, 1.0, 4.0):
        slow = s2 if slow is None else 0.9 * slow + 0.1 * s2
        assert running.update(s2) == pytest.approx(slow)
    config = Config()
    assert RunningSigma2().momentum == config.train.variance_momentum
    magnet = md.MagnetTraining(_data()[1])
    assert magnet.running_sigma2.momentum == config.train.variance_momentum
    assert magnet.index.clusters_per_class == config.index.clusters_per_class
    assert magnet.neighbours == config.eval.neighbours
    assert magnet._sampler_args["clusters_per_batch"] == config.sampler.clusters_per_batch
    assert magnet._sampler_args["examples_per_cluster"] == config.sampler.examples_per_cluster
