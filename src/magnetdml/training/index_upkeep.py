"""Index upkeep (paper §3.2): when the cluster index is refreshed, and the refresh itself.

A refresh pauses training, embeds every training example in one eval-mode pass and
re-clusters each class, warm-started from the previous centres. With ``index.refresh_lag``
it runs instead on a background thread from a snapshot of the weights and is swapped in a
fixed number of iterations later (``background_refresh``). The adaptive schedule embeds a
fixed probe of training examples to measure how far the embeddings drifted.

:class:`IndexUpkeep` is one part of :class:`~magnetdml.training.trainer.Trainer`: it owns the
index and everything about refreshing it (its state is listed in its docstring); the trainer
passes in the iteration and the sampler that must follow each new index.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from .background_refresh import BackgroundRefresh
from .config import Config
from .embed import embed_dataset
from .refresh import RefreshSchedule
from .setup import make_index

# Adaptive refresh: embed PROBE_SIZE fixed training examples every PROBE_EVERY iterations.
# 128 points estimate the mean displacement to ~10%. Forwarding 256 every 25 steps of 48 cost
# ~9% of the training time when one eval forward was ~2.3x cheaper than a training step per
# image on a small CNN (benchmarks/training_overhead.py); 128 every 50, ~2%. The eval forward
# now runs on oneDNN with BatchNorm folded (models/inference.py), 4-5x cheaper than a step.
PROBE_SIZE = 128
PROBE_EVERY = 50


def check_training_classes(config: Config, labels: np.ndarray) -> None:
    """The training split has what every loss needs: two classes, and (cluster losses) clusters
    of two or more members on average in its smallest class, else ``s2`` is 0."""
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if counts.size < 2:
        held = (
            f" (data.unseen_classes {config.data.unseen_classes} holds the others out)"
            if config.data.unseen_classes
            else ""
        )
        raise ValueError(
            f"the training split has {counts.size} class{held}; metric learning "
            "needs at least two: lower data.unseen_classes or use more classes"
        )
    k = config.index.clusters_per_class
    if k > counts.min() // 2 and config.loss.spec().uses_index and config.index.method == "kmeans":
        raise ValueError(
            f"index.clusters_per_class {k} leaves clusters of fewer than two "
            f"members in the smallest training class ({int(counts.min())} "
            "examples), whose variance is 0; use at most "
            f"{max(1, int(counts.min()) // 2)}"
        )


class IndexUpkeep:
    """The cluster index of a run and its refreshes: scheduled, in line or in the background.

    State: ``index`` (``None`` for losses trained without one), ``index_iteration`` (the
    iteration whose embeddings it clusters), ``pending_refresh`` (a background refresh not yet
    swapped in), ``schedule`` (when the next refresh is due, and the drift probe's reference),
    ``probe`` (the fixed training rows the adaptive schedule embeds), ``refreshes`` /
    ``refresh_seconds`` (counted for the summary), and the training embeddings of the last
    iteration that needed them (:meth:`train_embeddings`).

    ``precision`` (``index.refresh_precision``) is what the refreshes embed in during
    training; ``index_precision`` what the current index was fitted from. A bfloat16 pass is
    never cached as the training embeddings: evaluation reuses those, and scores float32."""

    def __init__(self, config, model, train_split, dist, *, uses_index: bool) -> None:
        self.model, self.dataset, self.dist = model, train_split, dist
        self.labels = train_split.labels
        self.lag = config.index.refresh_lag
        self.precision = self.index_precision = config.index.refresh_precision
        self.index = make_index(config) if uses_index else None
        self.index_iteration = 0
        self.pending_refresh: BackgroundRefresh | None = None
        self.pending_precision = self.precision  # what the pending refresh embeds in
        self.schedule = RefreshSchedule(
            every_iterations=config.index.refresh_every,
            drift_threshold=config.index.drift_threshold,
            check_every=PROBE_EVERY,
        )
        probe_rng = np.random.default_rng(config.train.seed)
        self.probe = np.sort(
            probe_rng.choice(len(self.labels), min(PROBE_SIZE, len(self.labels)), replace=False)
        )
        self.refreshes = 0
        self.refresh_seconds = 0.0
        self._train_embeddings: tuple[int, np.ndarray] | None = None

    def due(self, iteration: int) -> bool:
        if self.index is None:
            return False
        if not self.schedule.wants_probe(iteration):
            return self.schedule.due(iteration)
        # adaptive: rank 0 measures the drift and decides for all (ranks could disagree on
        # a threshold crossing by float noise, and then wait on different collectives)
        return bool(
            self.dist.broadcast_object(
                self.dist.on_main(lambda: self.schedule.due(iteration, self._embed_probe()))
            )
        )

    def refresh(self, iteration: int, sampler, *, precision: str | None = None) -> None:
        """Paper §3.2: pause training, embed every training example in one eval-mode pass,
        re-cluster each class (warm-started), and point ``sampler`` (if any) at the new
        clusters, which recomputes its cluster losses. ``precision`` overrides
        :attr:`precision` for this refresh (the final index is fitted in float32)."""
        started = time.perf_counter()
        precision = precision or self.precision
        if self.lag and self.refreshes:
            self._start_background_refresh(
                {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                iteration,
                iteration + self.lag,
                sampler,
                precision=precision,
            )
            self.refresh_seconds += time.perf_counter() - started
            return
        embeddings = (  # sharded across ranks, gathered
            self.train_embeddings(iteration)
            if precision == "float32"
            else self._embed(self.model, dist=self.dist, precision=precision)
        )

        def cluster():  # once, on rank 0, then shared: every rank gets the same index
            if self.refreshes:
                return self.index.refresh(embeddings, self.labels)  # warm start
            return self.index.fit(embeddings, self.labels)

        self.index = self.dist.broadcast_object(self.dist.on_main(cluster))
        self.index_iteration, self.index_precision = iteration, precision
        if sampler is not None:
            sampler.set_index(self.index)
        self.schedule.refreshed(embeddings[self.probe])
        self.refresh_seconds += time.perf_counter() - started
        self.refreshes += 1

    def _start_background_refresh(
        self,
        snapshot: dict,
        snapshot_iteration: int,
        apply_at: int,
        sampler=None,
        *,
        precision: str | None = None,
    ) -> None:
        """Embed ``snapshot`` weights and re-cluster on a thread (``background_refresh``)."""
        self.apply_pending_refresh(sampler, apply_at, wait=True)  # one at a time, in order
        # recorded with the snapshot: a resumed run redoes the refresh in the same precision
        self.pending_precision = precision = precision or self.precision
        shadow = copy.deepcopy(self.model)
        index = copy.deepcopy(self.index)  # training keeps using self.index meanwhile

        def compute(weights: dict):
            shadow.load_state_dict(weights)
            embeddings = self._embed(shadow, precision=precision)
            return index.refresh(embeddings, self.labels), embeddings[self.probe]

        self.pending_refresh = BackgroundRefresh(snapshot, snapshot_iteration, apply_at, compute)

    def apply_pending_refresh(self, sampler, iteration: int, *, wait: bool = False) -> None:
        """Swap in a background refresh once its iteration has come (or now, with ``wait``)."""
        pending = self.pending_refresh
        if pending is None or not (wait or iteration >= pending.apply_at):
            return
        started = time.perf_counter()
        self.index, probe = pending.result()
        self.index_precision = self.pending_precision
        self.pending_refresh = None
        self.index_iteration = pending.snapshot_iteration
        sampler.set_index(self.index)
        self.schedule.refreshed(probe)
        self.refresh_seconds += time.perf_counter() - started  # time waited
        self.refreshes += 1

    def train_embeddings(self, iteration: int) -> np.ndarray:
        """Embeddings of the whole training set at ``iteration`` (computed once)."""
        if self._train_embeddings is None or self._train_embeddings[0] != iteration:
            embeddings = self._embed(self.model, dist=self.dist)
            self._train_embeddings = (iteration, embeddings)
        return self._train_embeddings[1]

    @property
    def float32_index_iteration(self) -> int:
        """The iteration whose float32 embeddings the index clusters, which evaluation scores
        against; -1 for an index fitted on bfloat16 ones, which kNC then refits on float32
        ones first. Checkpoints record it as ``index_iteration``, so a resumed run and
        ``magnetdml evaluate`` refit such an index too."""
        return self.index_iteration if self.index_precision == "float32" else -1

    def index_current(self, iteration: int) -> bool:
        """Whether evaluation at ``iteration`` may score with the index as it is."""
        return self.float32_index_iteration == iteration

    def _embed(self, model, *, dataset=None, dist=None, precision: str = "float32"):
        """``(N, E)`` embeddings of ``dataset`` (the training split) by ``model``; with
        ``dist``, sharded across the ranks (after sharing rank 0's buffers) and gathered."""
        dataset = self.dataset if dataset is None else dataset
        if dist is not None:
            dist.broadcast_buffers(model)
        return embed_dataset(
            model, dataset, device=self.dist.device, dist=dist, precision=precision
        )

    def forget_embeddings(self) -> None:
        """Drop the cached training embeddings (the weights were replaced)."""
        self._train_embeddings = None

    def state_dict(self) -> dict:
        """The checkpoint's index entries (its timing counters go into ``timing``)."""
        return {
            "index": self.index.state_dict() if self.index is not None else None,
            "index_iteration": self.float32_index_iteration,
            "schedule_reference": self.schedule.reference,
            "pending_refresh": (
                {**self.pending_refresh.state_dict(), "precision": self.pending_precision}
                if self.pending_refresh is not None
                else None
            ),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` and the ``timing`` counters of a checkpoint; a pending
        background refresh is redone from the same weight snapshot (the same index results)."""
        self.index_iteration = state.get("index_iteration", state["iteration"])
        # the checkpoint records -1 for an index fitted on bfloat16 embeddings (see
        # float32_index_iteration); any other index was fitted on float32 ones
        self.index_precision = "float32" if self.index_iteration >= 0 else "bfloat16"
        if self.index is not None:
            self.index.load_state_dict(state["index"])
        self.refreshes = state["timing"]["refreshes"]
        self.refresh_seconds = state["timing"]["refresh_seconds"]
        self.schedule.refreshed(state["schedule_reference"])
        pending = state.get("pending_refresh")
        if pending is not None:
            self._start_background_refresh(
                pending["snapshot"],
                pending["snapshot_iteration"],
                pending["apply_at"],
                precision=pending.get("precision"),  # absent before bfloat16 refreshes: ours
            )

    def _embed_probe(self) -> np.ndarray:
        # in the refreshes' precision: drift compares it with theirs
        subset = _Subset(self.dataset, self.probe)
        return self._embed(self.model, dataset=subset, precision=self.precision)


class _Subset:
    """The rows ``indices`` of a dataset, with the ``get_batch`` protocol."""

    def __init__(self, dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, rows):
        return self.dataset.get_batch(self.indices[np.asarray(rows)])
