"""Index upkeep (paper §3.2): when the cluster index is refreshed, and the refresh itself.

A refresh pauses training, embeds every training example in one eval-mode pass and
re-clusters each class, warm-started from the previous centres. With ``index.refresh_lag``
it runs instead on a background thread from a snapshot of the weights and is swapped in a
fixed number of iterations later (``background_refresh``). The adaptive schedule embeds a
fixed probe of training examples to measure how far the embeddings drifted.

:class:`IndexUpkeep` is a part of :class:`~magnetdml.training.trainer.Trainer`: its methods
work on the trainer's model, index, sampler, schedule and timing.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from .background_refresh import BackgroundRefresh
from .embed import embed_dataset

# Adaptive refresh: embed PROBE_SIZE fixed training examples every PROBE_EVERY iterations.
# 128 points estimate the mean displacement to ~10%. Forwarding 256 every 25 steps of 48 cost
# ~9% of the training time when one eval forward was ~2.3x cheaper than a training step per
# image on a small CNN (benchmarks/training_overhead.py); 128 every 50, ~2%. The eval forward
# now runs on oneDNN with BatchNorm folded (models/inference.py), 4-5x cheaper than a step.
PROBE_SIZE = 128
PROBE_EVERY = 50


class IndexUpkeep:
    """The trainer's index refresh: scheduled, in line or in the background."""

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


class _Subset:
    """The rows ``indices`` of a dataset, with the ``get_batch`` protocol."""

    def __init__(self, dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, rows):
        return self.dataset.get_batch(self.indices[np.asarray(rows)])
