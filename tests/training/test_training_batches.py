"""How each loss draws its batches (``sampler.batches``), and why softmax draws them uniformly.

The softmax baseline once drew P x K class-balanced batches like the pair losses. With many
classes a P-class batch pushes the other C - P logits down at every step, and on Omniglot's
675 training characters (P = 6) its loss sat at chance for 1,500 steps. These tests pin the
fix: uniform batches by default, and the warm start's classifier handed over.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from magnetdml.losses import SoftmaxLoss
from magnetdml.sampling import ClassBalancedSampler, NeighbourhoodSampler, UniformSampler
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config
from magnetdml.training.distributed import Distributed
from magnetdml.training.trainer import Trainer
from magnetdml.training.warm_start import warm_start

CLASSES = 900


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """900 Gaussian classes of 12 vectors each in 32 dimensions (a seeded .npz)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), 12)
    vectors = rng.normal(size=(CLASSES, 32))[labels] + 0.5 * rng.normal(size=(labels.size, 32))
    path = tmp_path_factory.mktemp("data") / "many.npz"
    np.savez(path, X=vectors.astype(np.float32), y=labels)
    return path


def _softmax_run(path, out, **overrides):
    config = apply_overrides(
        Config(),
        {
            "data.name": "features",
            "data.data_dir": str(path),
            "loss.name": "softmax",
            "train.epochs": 3,
            "train.iterations_per_epoch": 100,
            "train.threads": 1,
            "model.embedding_dim": 32,
            "eval.every": 0,
            "eval.plots": False,
            "out": str(out),
            **overrides,
        },
    )
    train(config, progress=False)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_softmax_learns_on_many_classes_with_its_default_batches(many_classes, tmp_path):
    chance = math.log(CLASSES)
    uniform = _softmax_run(many_classes, tmp_path / "uniform")
    balanced = _softmax_run(
        many_classes, tmp_path / "balanced", **{"sampler.batches": "class_balanced"}
    )
    # the same 48 images per step: uniform batches fall far below chance, P = 8 classes
    # per batch stay near it (the collapse this default fixes)
    assert uniform[-1] < 0.5 * chance
    assert balanced[-1] > 0.7 * chance


def test_each_loss_draws_its_own_batches_and_the_choice_can_be_overridden(tmp_path):
    folders = iter(range(100))

    def sampler(**overrides):
        config = apply_overrides(
            Config(),
            {
                "train.threads": 1,
                "eval.plots": False,
                "sampler.classes_per_batch": 5,
                "out": str(tmp_path / str(next(folders))),
                **overrides,
            },
        ).validate()
        t = Trainer(config, Distributed.setup("cpu"))
        t.build_initial_index()
        return t.sampler

    assert isinstance(sampler(), NeighbourhoodSampler)
    softmax = sampler(**{"loss.name": "softmax"})
    assert isinstance(softmax, UniformSampler) and softmax.batch_size == 5 * 6  # P x K
    assert isinstance(sampler(**{"loss.name": "triplet"}), ClassBalancedSampler)
    chosen = sampler(
        **{"loss.name": "triplet", "sampler.batches": "uniform", "sampler.batch_size": 40}
    )
    assert isinstance(chosen, UniformSampler) and chosen.batch_size == 40


@pytest.mark.parametrize(
    "overrides,match",
    [
        (
            {"sampler.batches": "uniform"},
            "sampler.batches must be 'auto' or 'neighbourhood' for loss 'magnet'",
        ),
        (
            {"loss.name": "softmax", "sampler.batches": "neighbourhood"},
            "sampler.batches 'neighbourhood' needs a cluster loss",
        ),
        ({"sampler.batches": "shuffled"}, "sampler.batches must be one of 'auto'"),
        ({"sampler.batch_size": -1}, "sampler.batch_size must be >= 0"),
    ],
)
def test_bad_batch_choices_name_the_rule(overrides, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(Config(), overrides).validate()


def test_softmax_trains_on_from_the_classifier_of_its_warm_start(tmp_path):
    config = apply_overrides(
        Config(), {"loss.name": "softmax", "train.threads": 1, "out": str(tmp_path / "run")}
    ).validate()
    t = Trainer(config, Distributed.setup("cpu"))
    before = t.loss_fn.classifier.weight.detach().clone()
    warm_start(t, 5)
    x, y = t.splits.train.get_batch(np.arange(len(t.labels)))
    with torch.no_grad():
        embeddings = t.model(x)
        handed_over = float(t.loss_fn(embeddings, y))
        fresh = float(SoftmaxLoss(config.model.embedding_dim, t.splits.num_classes)(embeddings, y))
    assert not torch.equal(before, t.loss_fn.classifier.weight)
    # the baseline starts from the trained classifier, not from a random one at ~ln C
    assert handed_over < 0.5 * fresh


def test_choosing_the_batches_leaves_the_global_random_state_alone():
    from magnetdml.training.config import Config

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    config = Config().validate()  # validating builds a throwaway loss
    assert config.sampler.batch_protocol("softmax") == "uniform"
    assert torch.equal(torch.rand(3), expected)
