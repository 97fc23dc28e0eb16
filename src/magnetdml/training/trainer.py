"""The state of one training run and the steps the loop in ``loop.py`` calls in order.

:class:`Trainer` builds the run (data, model, loss, optimiser, index, sampler) and takes one
training step; its other steps live beside it, one concept per file: the index refresh
(``index_upkeep.py``), evaluation (``eval_step.py``) and checkpoints (``checkpoint_state.py``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.augment import RandomRescaleCrop
from .background_refresh import BackgroundRefresh
from .checkpoint_state import CheckpointState
from .config import Config
from .config_io import config_to_dict
from .distributed import Distributed
from .early_stopping import EarlyStopping
from .eval_step import EvaluationStep
from .index_upkeep import PROBE_EVERY, PROBE_SIZE, IndexUpkeep
from .init_weights import load_initial_weights
from .objective import Objective
from .refresh import RefreshSchedule
from .report_plots import INITIAL_SNAPSHOT
from .run_dir import RunDir
from .setup import (
    load_splits,
    make_index,
    make_loss,
    make_model,
    make_optimizer,
    make_sampler,
    seed_everything,
)


def check_training_classes(config: Config, labels: np.ndarray) -> None:
    """The training split has what every loss needs: two classes, and (cluster losses) clusters
    of two or more members on average in its smallest class, else ``s2`` is 0."""
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if counts.size < 2:
        held = (f" (data.unseen_classes {config.data.unseen_classes} holds the others out)"
                if config.data.unseen_classes else "")
        raise ValueError(f"the training split has {counts.size} class{held}; metric learning "
                         "needs at least two: lower data.unseen_classes or use more classes")
    k = config.index.clusters_per_class
    if k > counts.min() // 2 and config.loss.spec().uses_index \
            and config.index.method == "kmeans":
        raise ValueError(f"index.clusters_per_class {k} leaves clusters of fewer than two "
                         f"members in the smallest training class ({int(counts.min())} "
                         "examples), whose variance is 0; use at most "
                         f"{max(1, int(counts.min()) // 2)}")


class Trainer(IndexUpkeep, EvaluationStep, CheckpointState, EarlyStopping):
    """Everything a run holds: data, model, loss, optimiser, cluster index, sampler, history."""

    def __init__(self, config: Config, dist: Distributed, *, overwrite: bool = False) -> None:
        if config.index.refresh_lag and dist.world_size > 1:
            raise ValueError("index.refresh_lag > 0 (a refresh on a background thread) runs in "
                             f"one process only; got {dist.world_size} processes: use "
                             "--index.refresh_lag 0 under torchrun")
        if config.train.warm_start_cache and dist.world_size > 1:
            raise ValueError("train.warm_start_cache (reusing a stored warm start) works in one "
                             f"process only; got {dist.world_size} processes: leave "
                             "--train.warm_start_cache empty under torchrun")
        # rank 0 names the default folder: the ranks' clocks may straddle a second
        out = dist.broadcast_object(
            Path(config.out or RunDir.default_path(config.data.name, config.loss.name)))
        self.config = config = dataclasses.replace(config, out=str(out))
        self.dist = dist
        # only rank 0 writes the run folder; its refusal (finished run) stops every rank
        self.run = dist.on_main(lambda: RunDir.open(out, config_to_dict(config),
                                                    overwrite=overwrite))
        seed_everything(config.train.seed)   # same seed on every rank: the same initial model
        self.splits = load_splits(config)
        self.labels = self.splits.train.labels
        self.check_patience()
        check_training_classes(config, self.labels)
        self.model = make_model(config, self.splits.input_shape).to(dist.device)
        if config.model.init_from:   # after the seeded initialisation: the RNG is unchanged
            load_initial_weights(self.model, config.model.init_from)
        self.loss_fn = make_loss(config, self.splits.num_classes).to(dist.device)
        self.objective = Objective(self.model, self.loss_fn, amp=config.train.amp,
                                   device_type=dist.device.type)
        self._ddp: nn.Module | None = None   # wrapped on the first step (after warm start)
        self.uses_index = config.loss.spec().uses_index
        self.optimizer = make_optimizer(config, self.model, self.loss_fn)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer,
                                                                config.train.lr_decay)
        self.augmenter = self._make_augmenter()
        self.train_augmenter = self.augmenter if config.data.augment else None
        self.schedule = RefreshSchedule(every_iterations=config.index.refresh_every,
                                        drift_threshold=config.index.drift_threshold,
                                        check_every=PROBE_EVERY)
        probe_rng = np.random.default_rng(config.train.seed)
        self.probe = np.sort(probe_rng.choice(len(self.labels),
                                              min(PROBE_SIZE, len(self.labels)), replace=False))
        self.index = make_index(config) if self.uses_index else None
        self.index_iteration = 0     # the iteration whose embeddings the index clusters
        self.pending_refresh: BackgroundRefresh | None = None
        self.sampler = None
        self.epoch = self.iteration = 0
        self.variance: float | None = None
        self.loss_curve: list[tuple[int, float]] = []
        # train_seconds: the epochs, refreshes included; initial_index_seconds: the first fit
        self.timing = {"train_seconds": 0.0, "refresh_seconds": 0.0, "refreshes": 0,
                       "images": 0, "initial_index_seconds": 0.0}
        self._train_embeddings: tuple[int, np.ndarray] | None = None
        # (training embeddings, index, sigma^2) of the last kNC scores: see _scoring_index
        self._scoring_cache: tuple | None = None

    def build_initial_index(self) -> None:
        """Fit the first cluster index (cluster losses) and make the batch sampler."""
        started = time.perf_counter()
        if self.uses_index:
            self.refresh_index()
        self.timing["initial_index_seconds"] = time.perf_counter() - started
        self.sampler = make_sampler(self.config, self.labels, self.index,
                                    rank=self.dist.rank, world_size=self.dist.world_size)

    def snapshot_for_plots(self) -> dict:
        """Test embeddings and cluster centres now: the "initial distribution" picture.
        Call it on every rank (the embedding passes are sharded); rank 0 gets the snapshot."""
        queries = self.embed(self.splits.test)
        reference = self.train_embeddings() if self.index is None else None

        def snapshot() -> dict:
            index = self.index if reference is None else make_index(self.config).fit(
                reference, self.labels)
            return {"embeddings": queries, "labels": self.splits.test.labels,
                    "centroids": index.centroids_, "centroid_labels": index.centroid_labels_}

        return self.dist.on_main(snapshot)

    def save_initial(self, snapshot: dict | None) -> None:
        if snapshot is not None and self.run is not None:
            np.savez_compressed(self.run.path / INITIAL_SNAPSHOT, **snapshot)

    # ------------------------------------------------------------------- one step
    def step(self, batch: list[int]) -> float:
        """Forward the batch, compute the loss, update the weights and the sampler's cache."""
        indices = np.asarray(batch, dtype=np.int64)
        x, y = self.splits.train.get_batch(indices)
        x, y = x.to(self.dist.device, non_blocking=True), y.to(self.dist.device)
        if self.train_augmenter is not None:
            x = self.train_augmenter(x)
        if self.uses_index:
            clusters = torch.as_tensor(self.index.assignments_[indices], device=y.device)
            per_example = self.net(x, y, clusters)                           # (B,)
            loss = per_example.mean()
        else:
            loss = self.net(x, y)
        if not torch.isfinite(loss.detach()):   # before the update: the weights stay usable
            raise ValueError(
                f"training diverged at iteration {self.iteration + 1} (epoch {self.epoch + 1}): "
                f"the loss is {float(loss.detach())}; lower train.lr (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}). The checkpoint holds the last "
                "finished epoch: rerun with a lower --train.lr and --overwrite")
        value = (self._share_losses(indices, per_example.detach(), self.loss_fn.last_variance)
                 if self.uses_index else None)
        # Under DDP, backward all-reduces (averages) the gradients: the update of the mean of
        # the ranks' neighbourhood losses, as one process accumulating them would make.
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        if value is None:
            value = self.dist.all_reduce_mean(float(loss.detach()))
        self.loss_curve.append((self.iteration, value))
        self.timing["images"] += len(indices) * self.dist.world_size
        return value

    @property
    def net(self) -> nn.Module:
        """The model and loss as one module; under torchrun, wrapped in DDP. Wrapped lazily:
        the warm start trains the model under its own DDP wrapper first."""
        if self._ddp is None:
            self._ddp = (DistributedDataParallel(self.objective) if self.dist.world_size > 1
                         else self.objective)
        return self._ddp

    def _share_losses(self, indices: np.ndarray, losses: torch.Tensor,
                      variance: torch.Tensor) -> float:
        """Every rank caches every rank's losses, so the samplers stay identical; returns the
        mean loss over all ranks (every neighbourhood has the same size)."""
        packed = torch.stack([torch.as_tensor(indices, dtype=torch.float64),
                              losses.double().cpu(),
                              variance.double().cpu().expand(len(indices))], dim=1)
        packed = self.dist.gather_rows(packed.to(self.dist.device)).cpu().numpy()
        self.sampler.update_losses(packed[:, 0].astype(np.int64), packed[:, 1])
        batch_variance = float(packed[:, 2].mean())
        momentum = self.config.train.variance_momentum
        self.variance = (batch_variance if self.variance is None
                         else momentum * self.variance + (1 - momentum) * batch_variance)
        return float(packed[:, 1].mean())

    def epoch_record(self, mean_loss: float) -> dict:
        """The per-epoch line of ``metrics.jsonl`` (test errors are added by the loop)."""
        record = {"epoch": self.epoch, "iteration": self.iteration, "loss": mean_loss,
                  "lr": self.optimizer.param_groups[0]["lr"], "sigma2": self.variance,
                  "refreshes": self.timing["refreshes"],
                  "train_seconds": round(self.timing["train_seconds"], 3)}
        if self.index is not None:
            per_class = np.asarray(self.index.clusters_per_class_)
            record["clusters_per_class"] = {"mean": float(per_class.mean()),
                                            "min": int(per_class.min()),
                                            "max": int(per_class.max())}
            record["drift"] = self.schedule.last_drift
        if self.sampler is not None and hasattr(self.sampler, "stats"):
            # scalars only: per-cluster arrays would make every line as long as the index
            record["sampler"] = {k: v for k, v in self.sampler.stats().items()
                                 if isinstance(v, (int, float))}
            self.sampler.reset_stats()
        return record

    def log(self, record: dict) -> None:
        if self.run is not None:
            self.run.append_history(record)

    def _make_augmenter(self):
        """Paper §4 augmentation as ``x -> x'`` with this rank's own seeded generator."""
        if not (self.config.data.augment or self.config.eval.test_time_augment):
            return None
        augment = RandomRescaleCrop(max_scale=self.config.data.max_scale)
        self.augment_generator = torch.Generator(device=self.dist.device)
        self.augment_generator.manual_seed(self.config.train.seed + 1000 * self.dist.rank)
        return lambda x: augment(x, self.augment_generator)
