"""Build what a run needs from its config: data, model, loss, optimiser, index and sampler."""

from __future__ import annotations

import contextlib
import dataclasses
import random

import numpy as np
import torch
from torch import nn

from ..clustering.index import ClusterIndex
from ..data import load_dataset
from ..data.augment import seeded_rescale_crop
from ..data.coarse import collapse_pairs
from ..losses import build_loss
from ..models import build_model
from ..sampling.balanced import ClassBalancedSampler
from ..sampling.neighbourhood import NeighbourhoodSampler
from ..sampling.uniform import UniformSampler
from .config import Config


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's legacy global state (third-party code may use it) and random."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def pin_data_options(config: Config) -> Config:
    """``config`` with the data-dependent loader defaults fixed in ``data.options`` (an image
    folder's input size, channels and class level), so the run folder's ``config.json`` says
    how every later command must read new images, whatever happens to the training folder."""
    from ..data.image_tree import options_text
    from ..data.loading import pin_loader_options

    pinned = pin_loader_options(
        config.data.name, config.data.data_dir, config.data.loader_options()
    )
    if pinned is None:
        return config
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, options=options_text(pinned))
    )


#: ``{data config: splits}`` while :func:`shared_splits` is active (None: no sharing).
_SHARED: dict | None = None


@contextlib.contextmanager
def shared_splits():
    """Within this block, :func:`load_splits` loads each data config once and hands every later
    caller the same splits (read-only by convention): a search's trials in one process share
    one dataset instead of decoding it again per trial."""
    global _SHARED
    outer, _SHARED = _SHARED, ({} if _SHARED is None else _SHARED)
    try:
        yield
    finally:
        _SHARED = outer


def load_splits(config: Config):
    """The dataset's splits; with ``data.collapse_pairs`` the labels are pairs of classes and
    the original labels are the attribute ``"fine"``."""
    if _SHARED is not None:
        if config.data not in _SHARED:
            _SHARED.clear()  # one dataset at a time: bounded memory
            _SHARED[config.data] = _load_splits(config)
        return _SHARED[config.data]
    return _load_splits(config)


def _load_splits(config: Config):
    splits = load_dataset(
        config.data.name,
        config.data.data_dir,
        seed=config.data.seed,
        val_fraction=config.data.val_fraction,
        unseen_classes=config.data.unseen_classes or None,
        val_classes=config.data.val_classes,
        split_by=config.data.split_by or None,
        val_folds=config.data.val_folds,
        val_fold=config.data.val_fold,
        **config.data.loader_options(),
    )
    return collapse_pairs(splits, config.data.seed) if config.data.collapse_pairs else splits


def make_model(config: Config, input_shape) -> nn.Module:
    """The embedding network; it L2-normalises its output when :func:`trains_directions`."""
    return build_model(
        config.model.backbone,
        tuple(input_shape),
        embedding_dim=config.model.embedding_dim,
        normalize=trains_directions(config),
        **config.model.backbone_options(),
    )


def trains_directions(config: Config) -> bool:
    """True when only the direction ``r / ||r||`` of the embedding is trained: with
    ``model.normalize``, or with a loss that L2-normalises inside (triplet by default).

    Such a run's model normalises its own output, so that evaluation, search and exported
    embeddings use the geometry the loss trained: the norm ``||r||`` gets no gradient from
    such a loss, and would be noise to Euclidean kNN, k-means and kNC. Training is the same
    either way (normalising twice is normalising once)."""
    if config.model.normalize:
        return True
    with torch.random.fork_rng(devices=[]):  # a loss with weights (softmax) draws them
        return bool(getattr(make_loss(config, num_classes=2), "normalize", False))


def make_loss(config: Config, num_classes: int) -> nn.Module:
    """The configured loss; cluster losses (their spec's ``uses_index``) return per-example
    losses (the sampler caches them), so they are built with ``reduction="none"``."""
    loss = build_loss(
        config.loss.name,
        embedding_dim=config.model.embedding_dim,
        num_classes=num_classes,
        **config.loss.fields(),
    )
    if config.loss.spec().uses_index:
        loss.reduction = "none"
    return loss


def make_optimizer(config: Config, model: nn.Module, loss: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam over the model's and the loss's own parameters. A loss's
    parameters (classifier, proxies) get ``train.lr`` times ``loss.parameter_lr`` (its
    paper's default: ProxyAnchor's proxies learn 100x faster) in a group of their own; at a
    multiplier of 1 they share the model's group, as they always have."""
    train = config.train
    multiplier = config.loss.parameter_lr_multiplier()
    own = list(loss.parameters())
    if own and multiplier != 1.0:
        groups = [
            {"params": list(model.parameters())},
            {"params": own, "lr": train.lr * multiplier},
        ]
    else:
        groups = [{"params": [*model.parameters(), *own]}]
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.SGD(
        groups, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )


def make_index(config: Config) -> ClusterIndex:
    return ClusterIndex(
        clusters_per_class=config.index.clusters_per_class,
        method=config.index.method,
        distance_threshold=config.index.distance_threshold,
        seed=config.train.seed,
    )


def make_sampler(
    config: Config,
    labels: np.ndarray,
    index: ClusterIndex | None,
    *,
    rank: int = 0,
    world_size: int = 1,
):
    """Neighbourhoods (M clusters x D examples) for cluster losses; for the others P x K
    class-balanced or uniformly shuffled batches, as ``sampler.batches`` says (``auto``:
    uniform for softmax, class-balanced for pair and triplet losses)."""
    per_epoch = config.train.iterations_per_epoch or None
    if index is not None:
        return NeighbourhoodSampler(
            index,
            clusters_per_batch=config.sampler.clusters_per_batch,
            examples_per_cluster=config.sampler.examples_per_cluster,
            batches_per_epoch=per_epoch,
            seed=config.train.seed,
            num_replicas=world_size,
            rank=rank,
            impostors=config.sampler.impostors,
        )
    if config.sampler.batch_protocol(config.loss.name) == "uniform":
        size = config.sampler.batch_size or (
            config.sampler.classes_per_batch * config.sampler.examples_per_class
        )
        return UniformSampler(
            labels,
            batch_size=size,
            batches_per_epoch=per_epoch,
            seed=config.train.seed,
            num_replicas=world_size,
            rank=rank,
        )
    return ClassBalancedSampler(
        labels,
        classes_per_batch=config.sampler.classes_per_batch,
        examples_per_class=config.sampler.examples_per_class,
        batches_per_epoch=per_epoch,
        seed=config.train.seed,
        num_replicas=world_size,
        rank=rank,
    )


def make_augmenter(config: Config, dist):
    """Paper §4 augmentation as ``(x -> x', generator)``, with this rank's own seeded
    generator (``(None, None)`` when neither training nor test-time augmentation is on)."""
    if not (config.data.augment or config.eval.test_time_augment):
        return None, None
    seed = config.train.seed + 1000 * dist.rank
    return seeded_rescale_crop(config.data.max_scale, seed, dist.device)


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
