"""What a run writes about itself: the per-epoch line of ``metrics.jsonl`` and the final
summary of ``metrics.json``, both read from trainer ``t`` (``trainer.py``) and its parts."""

from __future__ import annotations

import numpy as np


def timing_summary(t) -> dict:
    """Seconds and counts of the run, with the index refreshes', in the summary's order."""
    first = {
        "train_seconds": t.timing["train_seconds"],
        "refresh_seconds": t.upkeep.refresh_seconds,
        "refreshes": t.upkeep.refreshes,
    }
    return {**first, **{k: v for k, v in t.timing.items() if k not in first}}


def epoch_record(t, mean_loss: float) -> dict:
    """The per-epoch line of ``metrics.jsonl`` (test errors are added by the loop)."""
    record = {
        "epoch": t.epoch,
        "iteration": t.iteration,
        "loss": mean_loss,
        "lr": t.optimizer.param_groups[0]["lr"],
        "sigma2": t.sigma2,
        "refreshes": t.upkeep.refreshes,
        "train_seconds": round(t.timing["train_seconds"], 3),
    }
    if t.index is not None:
        per_class = np.asarray(t.index.clusters_per_class_)
        record["clusters_per_class"] = {
            "mean": float(per_class.mean()),
            "min": int(per_class.min()),
            "max": int(per_class.max()),
        }
        record["drift"] = t.upkeep.schedule.last_drift
    if t.sampler is not None and hasattr(t.sampler, "stats"):
        # scalars only: per-cluster arrays would make every line as long as the index
        record["sampler"] = {
            k: v for k, v in t.sampler.stats().items() if isinstance(v, (int, float))
        }
        t.sampler.reset_stats()
    return record


def final_summary(t) -> dict:
    """The final model's full evaluation on the test split (and on the unseen classes, when
    the dataset has a class-disjoint split), with the run's identity, its early-stopping
    epoch ``e*``, sigma^2, the index size and the timing (a collective under torchrun)."""
    config = t.config
    summary = {
        "dataset": config.data.name,
        "loss": config.loss.name,
        "backbone": config.model.backbone,
        "run_dir": config.out,
        "epochs": t.epoch,
        "iterations": t.iteration,
        "sigma2": t.sigma2,
        **t.stopping.summary(t.epoch),
    }
    if config.eval.final:  # off: a search trial, scored on its validation split
        final = t.evaluation.final_test_embeddings = t.embed(t.splits.test)
        summary.update(t.evaluate(queries=final, full=True))
    if t.splits.unseen is not None and config.eval.final:
        summary["unseen"] = t.evaluation.unseen(t.model, t.splits.unseen)
    if t.index is not None:
        summary["clusters"] = int(t.index.n_clusters_)
    timing = timing_summary(t)
    seconds = timing["train_seconds"]
    summary.update(timing)
    summary["images_per_second"] = timing["images"] / seconds if seconds else None
    return summary
