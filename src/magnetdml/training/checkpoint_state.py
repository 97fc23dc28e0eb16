"""Checkpoint state: what a run saves after every epoch and how a resume restores it.

The checkpoint holds everything a resumed run needs to continue bit for bit, gathered from
the trainer and its parts (one flat dict; the format of every earlier version):

    trainer:        epoch, iteration, model, loss, optimizer, scheduler, loss_curve, timing
    running_sigma2: variance (sigma^2)
    upkeep:         index, index_iteration, schedule_reference, pending_refresh (redone from
                    the same weight snapshot); its refresh counters are in timing
    stopping:       best (epoch e* and its weights, sigma^2 and index)
    per rank:       sampler (the example stream), rng, augment_rng; under torchrun every
                    rank's are gathered into ``ranks`` (top-level ones are rank 0's)

The best epoch's state (:func:`weights_state`) is the subset a model is scored from.
"""

from __future__ import annotations

import copy

from .checkpoint_check import check_checkpoint, identity, load_model_state
from .setup import make_sampler, restore_rng_state, rng_state


def trainer_state(t) -> dict:
    """The checkpoint of trainer ``t`` (a collective under torchrun: it gathers)."""
    own = _rank_state(t)
    state = {
        "identity": identity(t.config),
        "epoch": t.epoch,
        "iteration": t.iteration,
        "variance": t.sigma2,
        "model": t.model.state_dict(),
        "loss": t.loss_fn.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        **t.upkeep.state_dict(),
        "loss_curve": t.loss_curve,
        "timing": t.timing_summary(),
        "best": t.stopping.best,
        **own,
    }
    if t.dist.world_size > 1:
        state["ranks"] = t.dist.all_gather_object(own)
    return state


def _rank_state(t) -> dict:
    """What differs between ranks: the sampler's example stream and the RNG states."""
    return {
        "sampler": t.sampler.state_dict(),
        "rng": rng_state(),
        "augment_rng": (t.augment_generator.get_state() if t.augmenter is not None else None),
    }


def restore_trainer(t, state: dict) -> None:
    """Put checkpoint ``state`` back into trainer ``t`` and its parts, once it is checked
    against the run's config (see :mod:`.checkpoint_check`)."""
    path = t.run.checkpoint_path if t.run is not None else t.config.out
    check_checkpoint(state, t.config, path, uses_index=t.uses_index)
    saved_world = len(state.get("ranks", [None]))
    if saved_world != t.dist.world_size:
        raise ValueError(
            f"the checkpoint in {t.config.out!r} was written by {saved_world} "
            f"process(es) but this run has {t.dist.world_size}; resume with the "
            "same --nproc-per-node (the samplers' random streams are per process)"
        )
    own = state["ranks"][t.dist.rank] if "ranks" in state else state
    t.epoch, t.iteration = state["epoch"], state["iteration"]
    t.running_sigma2.value = state["variance"]
    load_model_state(t.model, state["model"], t.config, path)
    t.loss_fn.load_state_dict(state["loss"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.upkeep.load_state_dict(state)  # after the model: a pending refresh copies it
    t.sampler = make_sampler(
        t.config, t.labels, t.index, rank=t.dist.rank, world_size=t.dist.world_size
    )
    t.loss_curve = [tuple(p) for p in state["loss_curve"]]
    t.timing = {
        k: v for k, v in state["timing"].items() if k not in ("refresh_seconds", "refreshes")
    }
    t.stopping.best = state.get("best")
    t.sampler.load_state_dict(own["sampler"])
    restore_rng_state(own["rng"])
    if t.augmenter is not None:
        t.augment_generator.set_state(own["augment_rng"])
    if t.run is not None:
        t.run.truncate_history(t.epoch)


def weights_state(t) -> dict:
    """What a model is scored from: weights, loss state, ``sigma^2`` and the index (kept for
    the best epoch by early stopping)."""
    return {
        "iteration": t.iteration,
        "model": copy.deepcopy(t.model.state_dict()),
        "loss": copy.deepcopy(t.loss_fn.state_dict()),
        "variance": t.sigma2,
        "index": t.index.state_dict() if t.index is not None else None,
        "index_iteration": t.upkeep.float32_index_iteration,
    }


def restore_weights(t, saved: dict) -> None:
    """Put :func:`weights_state` ``saved`` back into trainer ``t``."""
    t.model.load_state_dict(saved["model"])
    t.loss_fn.load_state_dict(saved["loss"])
    t.running_sigma2.value = saved["variance"]
    if t.index is not None:
        t.index.load_state_dict(saved["index"])
    # the index clusters epoch e*'s embeddings, which the restored model reproduces
    t.upkeep.index_iteration = t.iteration if saved["index_iteration"] == saved["iteration"] else -1
    t.upkeep.forget_embeddings()  # cached for the weights just replaced
