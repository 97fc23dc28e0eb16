"""The state of one training run and the steps the loop in ``loop.py`` calls in order."""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.augment import RandomRescaleCrop
from ..evaluation import KNearestClusters, cluster_variance, evaluate
from .background_refresh import BackgroundRefresh
from .config import Config
from .config_io import config_to_dict
from .distributed import Distributed
from .embed import embed_dataset
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
    restore_rng_state,
    rng_state,
    seed_everything,
)

# Adaptive refresh: embed PROBE_SIZE fixed training examples every PROBE_EVERY iterations.
# 128 points estimate the mean displacement to ~10%. Forwarding 256 every 25 steps of 48 cost
# ~9% of the training time when one eval forward was ~2.3x cheaper than a training step per
# image on a small CNN (benchmarks/training_overhead.py); 128 every 50, ~2%. The eval forward
# now runs on oneDNN with BatchNorm folded (models/inference.py), 4-5x cheaper than a step.
PROBE_SIZE = 128
PROBE_EVERY = 50
UNSEEN_METRICS = ["nmi", "f1", "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"]


class Trainer:
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
        self.model = make_model(config, self.splits.input_shape).to(dist.device)
        self.loss_fn = make_loss(config, self.splits.num_classes).to(dist.device)
        self.objective = _Objective(self.model, self.loss_fn, amp=config.train.amp,
                                    device_type=dist.device.type)
        self._ddp: nn.Module | None = None   # wrapped on the first step (after warm start)
        self.uses_index = bool(getattr(self.loss_fn, "requires_clusters", False))
        self.optimizer = make_optimizer(config, [*self.model.parameters(),
                                                 *self.loss_fn.parameters()])
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

    # ----------------------------------------------------------------- start / resume
    def start_from_checkpoint(self) -> bool:
        """Resume from the run folder's checkpoint, if it has one; return whether it did."""
        resumed = self.dist.broadcast_object(bool(self.run and self.run.has_checkpoint()))
        if resumed:
            self._restore(self.dist.broadcast_object(
                self.run.load_checkpoint() if self.run else None))
        return resumed

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
            value = self._share_losses(indices, per_example.detach(),
                                       self.loss_fn.last_variance)
        else:
            loss = self.net(x, y)
            value = None
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

    # ------------------------------------------------------------- index refresh
    def refresh_due(self) -> bool:
        if not self.uses_index:
            return False
        if not self.schedule.wants_probe(self.iteration):
            return self.schedule.due(self.iteration)
        # adaptive: rank 0 measures the drift and decides for all (ranks could disagree on
        # a threshold crossing by float noise, and then wait on different collectives)
        return bool(self.dist.broadcast_object(self.dist.on_main(
            lambda: self.schedule.due(self.iteration, self._embed_probe()))))

    def refresh_index(self) -> None:
        """Paper §3.2: pause training, embed every training example in one eval-mode pass,
        re-cluster each class (warm-started), and recompute the sampler's cluster losses."""
        started = time.perf_counter()
        if self.config.index.refresh_lag and self.timing["refreshes"]:
            self._start_background_refresh(
                {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                self.iteration, self.iteration + self.config.index.refresh_lag)
            self.timing["refresh_seconds"] += time.perf_counter() - started
            return
        embeddings = self.train_embeddings()   # sharded across ranks, gathered

        def cluster():   # once, on rank 0, then shared: every rank gets the same index
            if self.timing["refreshes"]:
                return self.index.refresh(embeddings, self.labels)   # warm start
            return self.index.fit(embeddings, self.labels)

        self.index = self.dist.broadcast_object(self.dist.on_main(cluster))
        self.index_iteration = self.iteration
        if self.sampler is not None:
            self.sampler.set_index(self.index)
        self.schedule.refreshed(embeddings[self.probe])
        self.timing["refresh_seconds"] += time.perf_counter() - started
        self.timing["refreshes"] += 1

    def _start_background_refresh(self, snapshot: dict, snapshot_iteration: int,
                                  apply_at: int) -> None:
        """Embed ``snapshot`` weights and re-cluster on a thread (``background_refresh``)."""
        self.apply_pending_refresh(wait=True)      # one at a time, in order
        shadow = copy.deepcopy(self.model)
        index = copy.deepcopy(self.index)          # training keeps using self.index meanwhile

        def compute(weights: dict):
            shadow.load_state_dict(weights)
            embeddings = embed_dataset(shadow, self.splits.train, device=self.dist.device)
            return index.refresh(embeddings, self.labels), embeddings[self.probe]

        self.pending_refresh = BackgroundRefresh(snapshot, snapshot_iteration, apply_at, compute)

    def apply_pending_refresh(self, *, wait: bool = False) -> None:
        """Swap in a background refresh once its iteration has come (or now, with ``wait``)."""
        pending = self.pending_refresh
        if pending is None or not (wait or self.iteration >= pending.apply_at):
            return
        started = time.perf_counter()
        self.index, probe = pending.result()
        self.pending_refresh = None
        self.index_iteration = pending.snapshot_iteration
        self.sampler.set_index(self.index)
        self.schedule.refreshed(probe)
        self.timing["refresh_seconds"] += time.perf_counter() - started   # time waited
        self.timing["refreshes"] += 1

    def train_embeddings(self) -> np.ndarray:
        """Embeddings of the whole training set at the current iteration (computed once)."""
        if self._train_embeddings is None or self._train_embeddings[0] != self.iteration:
            self.dist.broadcast_buffers(self.model)
            embeddings = embed_dataset(self.model, self.splits.train, device=self.dist.device,
                                       dist=self.dist)
            self._train_embeddings = (self.iteration, embeddings)
        return self._train_embeddings[1]

    def _embed_probe(self) -> np.ndarray:
        subset = _Subset(self.splits.train, self.probe)
        return embed_dataset(self.model, subset, device=self.dist.device)

    # ---------------------------------------------------------------- evaluation
    def embed(self, dataset) -> np.ndarray:
        """Embeddings of a test-like split (with test-time averaging when configured)."""
        self.dist.broadcast_buffers(self.model)
        return embed_dataset(self.model, dataset, device=self.dist.device, dist=self.dist,
                             augment=self.augmenter, copies=self.config.eval.test_time_augment)

    def evaluate(self, dataset=None, *, queries: np.ndarray | None = None,
                 full: bool = False) -> dict:
        """kNC and soft-kNN test errors (paper §3.3) against the training set's embeddings;
        ``full`` adds every other class-score and retrieval metric of ``evaluate``.
        Losses without an index get one fitted now, with ``sigma^2`` from its clusters."""
        dataset = dataset if dataset is not None else self.splits.test
        queries = self.embed(dataset) if queries is None else queries   # sharded passes
        reference = self.train_embeddings()

        def scores() -> dict:   # on rank 0 only, then shared
            index, variance = self.index, self.variance
            if index is not None and self.index_iteration != self.iteration:
                # between refreshes (adaptive or every-N schedules) the training index is
                # stale: kNC uses the current model's clusters (paper §3.3: the final index),
                # in a copy so that evaluating never changes the training run
                index = copy.deepcopy(index).refresh(reference, self.labels)
            if index is None:
                index = make_index(self.config).fit(reference, self.labels)
                variance = cluster_variance(reference, index)
            knc = KNearestClusters(neighbours=self.config.eval.neighbours).fit(index, variance)
            metrics = {"knc_error": float(np.mean(knc.predict(queries) != dataset.labels))}
            metrics.update(evaluate(queries, dataset.labels, reference=reference,
                                    reference_labels=self.labels,
                                    metrics=None if full else ["knn_error"],
                                    k=self.config.eval.knn_k))
            return metrics

        return self.dist.broadcast_object(self.dist.on_main(scores))

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

    def finish(self) -> dict:
        """Full evaluation of the final model (and of unseen classes, when the dataset has a
        class-disjoint split); written to ``metrics.json``."""
        self.apply_pending_refresh(wait=True)
        self.final_test_embeddings = self.embed(self.splits.test)
        summary = {"dataset": self.config.data.name, "loss": self.config.loss.name,
                   "backbone": self.config.model.backbone, "run_dir": self.config.out,
                   "epochs": self.epoch, "iterations": self.iteration, "sigma2": self.variance,
                   **self.evaluate(queries=self.final_test_embeddings, full=True)}
        if self.splits.unseen is not None:
            unseen = self.embed(self.splits.unseen)
            summary["unseen"] = self.dist.broadcast_object(self.dist.on_main(
                lambda: evaluate(unseen, self.splits.unseen.labels, metrics=UNSEEN_METRICS,
                                 seed=self.config.train.seed)))
        if self.index is not None:
            summary["clusters"] = int(self.index.n_clusters_)
        seconds = self.timing["train_seconds"]
        summary.update(self.timing)
        summary["images_per_second"] = self.timing["images"] / seconds if seconds else None
        if self.run is not None:
            self.run.write_summary(summary)
        return summary

    # ------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """The run's state (a collective under torchrun: the per-rank streams are gathered).
        Top-level sampler/RNG entries are rank 0's; ``ranks`` holds every rank's."""
        own = self._rank_state()
        state = {"epoch": self.epoch, "iteration": self.iteration, "variance": self.variance,
                "model": self.model.state_dict(), "loss": self.loss_fn.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "index": self.index.state_dict() if self.index is not None else None,
                "index_iteration": self.index_iteration,
                "loss_curve": self.loss_curve, "timing": self.timing,
                "schedule_reference": self.schedule.reference,
                "pending_refresh": (self.pending_refresh.state_dict()
                                    if self.pending_refresh is not None else None), **own}
        if self.dist.world_size > 1:
            state["ranks"] = self.dist.all_gather_object(own)
        return state

    def _rank_state(self) -> dict:
        """What differs between ranks: the sampler's example stream and the RNG states."""
        return {"sampler": self.sampler.state_dict(), "rng": rng_state(),
                "augment_rng": (self.augment_generator.get_state()
                                if self.augmenter is not None else None)}

    def save_checkpoint(self) -> None:
        state = self.state_dict()   # on every rank: it gathers
        if self.run is not None:
            self.run.save_checkpoint(state)

    def _restore(self, state: dict) -> None:
        saved_world = len(state.get("ranks", [None]))
        if saved_world != self.dist.world_size:
            raise ValueError(f"the checkpoint in {self.config.out!r} was written by "
                             f"{saved_world} process(es) but this run has "
                             f"{self.dist.world_size}; resume with the same --nproc-per-node "
                             "(the samplers' random streams are per process)")
        own = state["ranks"][self.dist.rank] if "ranks" in state else state
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.index_iteration = state.get("index_iteration", state["iteration"])
        self.variance = state["variance"]
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.index is not None:
            self.index.load_state_dict(state["index"])
        self.sampler = make_sampler(self.config, self.labels, self.index,
                                    rank=self.dist.rank, world_size=self.dist.world_size)
        self.sampler.load_state_dict(own["sampler"])
        self.loss_curve = [tuple(p) for p in state["loss_curve"]]
        self.timing = state["timing"]
        self.schedule.refreshed(state["schedule_reference"])
        pending = state.get("pending_refresh")
        if pending is not None:   # redo it from the same snapshot: the same index results
            self._start_background_refresh(pending["snapshot"], pending["snapshot_iteration"],
                                           pending["apply_at"])
        restore_rng_state(own["rng"])
        if self.augmenter is not None:
            self.augment_generator.set_state(own["augment_rng"])
        if self.run is not None:
            self.run.truncate_history(self.epoch)

    def _make_augmenter(self):
        """Paper §4 augmentation as ``x -> x'`` with this rank's own seeded generator."""
        if not (self.config.data.augment or self.config.eval.test_time_augment):
            return None
        augment = RandomRescaleCrop(max_scale=self.config.data.max_scale)
        self.augment_generator = torch.Generator(device=self.dist.device)
        self.augment_generator.manual_seed(self.config.train.seed + 1000 * self.dist.rank)
        return lambda x: augment(x, self.augment_generator)


class _Objective(nn.Module):
    """Network and loss as one module, so that DDP also averages the gradients of the loss's
    own parameters (the softmax baseline's classifier). Only the network runs under autocast
    (``amp``); the cluster losses compute in float32 themselves (log-sum-exp in float16
    underflows)."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, *, amp: bool,
                 device_type: str) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn
        self.amp, self.device_type = amp, device_type

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                clusters: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(self.device_type, enabled=self.amp,
                            dtype=torch.bfloat16 if self.device_type == "cpu"
                            else torch.float16):
            embeddings = self.model(x)                                       # (B, E)
        if clusters is None:
            return self.loss_fn(embeddings, y)                               # ()
        return self.loss_fn(embeddings, y, clusters)                         # (B,)


class _Subset:
    """The rows ``indices`` of a dataset, with the ``get_batch`` protocol."""

    def __init__(self, dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, rows):
        return self.dataset.get_batch(self.indices[np.asarray(rows)])

