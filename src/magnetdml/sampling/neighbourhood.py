"""Neighbourhood sampling (paper §3.2, component 1): the batches Magnet Loss trains on.

Each batch is one *neighbourhood*: a seed cluster drawn with probability proportional to its
mean cached example loss, its ``M - 1`` nearest impostor clusters (clusters of other classes,
nearest centre first), and ``D`` examples drawn uniformly from each of those ``M`` clusters.
Training then caches each example's loss (``update_losses``), so hard regions get revisited.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_choice, check_int
from .batch_stream import BatchStream, draw_uniform

#: How a neighbourhood's impostor clusters are chosen: the paper's nearest ones, or uniformly
#: among the other classes' clusters (an ablation: does focusing on the hardest confusions
#: help?).
IMPOSTORS = ("nearest", "random")


def as_numpy(name: str, value: Any) -> np.ndarray:
    """Detach a tensor (or take an array-like) as a 1-D numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {array.shape}")
    return array


class NeighbourhoodSampler(BatchStream):
    """Batches of ``M`` clusters x ``D`` examples from a fitted ``ClusterIndex`` (paper §3.2).

    Each batch (a list of ``M * D`` dataset indices; use as ``DataLoader(batch_sampler=...)``):

    1. seed cluster ``m`` with ``P(m) ∝ mean_{n in m, measured} loss_n``; a cluster with no
       measured example gets the mean of the measured cluster losses (1 if none is measured
       or that mean is 0), so it is never starved; a measured loss of 0 is kept (never
       seeded). If every weight is 0 the draw is uniform;
    2. the ``M - 1`` nearest impostor clusters of the seed (``index.nearest_impostors``), or
       with ``impostors="random"`` (an ablation, not the paper's method) ``M - 1`` distinct
       clusters of other classes drawn uniformly;
    3. ``D`` examples from each cluster (``draw_uniform``). Layout: the seed's ``D`` first,
       then each impostor's ``D`` (nearest first, with the paper's rule).

    Distributed (torchrun): every rank shares the seed-cluster stream and draws ``R``
    *distinct* seed clusters per step (successive sampling from the loss weights); rank ``r``
    yields the ``r``-th neighbourhood, so ranks never share a seed cluster in a step. Examples
    come from a per-rank stream. Feed ``update_losses`` the all-gathered (indices, losses) on
    every rank so the caches, and hence the seed draws, stay identical.

    ``len(sampler)`` is ``batches_per_epoch`` or ``max(1, N // (M * D * R))``; each epoch
    continues the random streams.
    """

    def __init__(
        self,
        index: Any,
        clusters_per_batch: int = 12,
        examples_per_cluster: int = 4,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        impostors: str = "nearest",
    ) -> None:
        super().__init__(batches_per_epoch, seed, num_replicas, rank)
        self.impostors = check_choice("impostors", impostors, IMPOSTORS)
        self.clusters_per_batch = check_int(
            "clusters_per_batch",
            clusters_per_batch,
            minimum=2,
            fix="a neighbourhood needs the seed cluster and at least one impostor",
        )
        self.examples_per_cluster = check_int(
            "examples_per_cluster",
            examples_per_cluster,
            minimum=2,
            fix="the variance needs two points per cluster",
        )
        self.batch_size = self.clusters_per_batch * self.examples_per_cluster
        self._losses: np.ndarray | None = None  # (N,) cached loss per example, NaN = never
        self._seed_counts: np.ndarray | None = None
        self._seeded_before = 0
        self.set_index(index)
        self.reset_stats()

    # ----------------------------------------------------------------------------- index
    def set_index(self, index: Any) -> None:
        """Use a (re)fitted index: recompute per-cluster mean losses for its clusters from the
        per-example cache (paper §3.2: the cluster losses must follow each refresh)."""
        if getattr(index, "centroids_", None) is None:
            raise ValueError(
                "index must be a fitted ClusterIndex; call "
                "index.fit(embeddings, labels) before building the sampler"
            )
        n = int(index.assignments_.shape[0])
        if self._losses is not None and n != self._losses.size:
            raise ValueError(
                f"index must cover the same {self._losses.size} training "
                f"examples as before; got one fitted on {n}"
            )
        need = self.clusters_per_batch - 1
        short = index.n_clusters_ - index.clusters_per_class_ < need  # (n_classes,)
        if len(index.classes_) < 2:
            raise ValueError(
                f"the index holds clusters of one class only ("
                f"{index.classes_[0]}): a neighbourhood needs impostor clusters "
                "of other classes; train on at least two classes"
            )
        if short.any():
            worst = int(np.argmax(index.clusters_per_class_))
            have = int(index.n_clusters_ - index.clusters_per_class_[worst])
            raise ValueError(
                f"clusters_per_batch={self.clusters_per_batch} needs {need} impostor clusters "
                f"for every class, but class {index.classes_[worst]} has only {have} clusters "
                f"of other classes; lower clusters_per_batch to <= {have + 1} or raise the "
                "index's clusters_per_class"
            )
        if self.num_replicas > index.n_clusters_:
            raise ValueError(
                f"num_replicas={self.num_replicas} ranks need as many distinct "
                f"seed clusters per step, but the index has {index.n_clusters_}"
            )
        self.index = index
        if self._losses is None:
            self._losses = np.full(n, np.nan)
        self._recount()
        # a refit renumbers the clusters: bank the clusters seeded under the old index, so
        # that distinct_seed_clusters still counts them (the epoch-end refresh comes before
        # the epoch's record is written)
        if getattr(self, "_seed_counts", None) is not None:
            self._seeded_before += int((self._seed_counts > 0).sum())
        self._seed_counts = np.zeros(index.n_clusters_, dtype=np.int64)

    def _recount(self) -> None:
        """Per-cluster sum and count of measured example losses, from the cache."""
        measured = ~np.isnan(self._losses)
        clusters = self.index.assignments_[measured]
        c = self.index.n_clusters_
        self._sums = np.bincount(clusters, weights=self._losses[measured], minlength=c).astype(
            np.float64
        )  # int64 when none measured
        self._counts = np.bincount(clusters, minlength=c)

    # ----------------------------------------------------------------------------- losses
    def update_losses(self, batch_indices: Any, per_example_losses: Any) -> None:
        """Cache ``per_example_losses (B,)`` for ``batch_indices (B,)`` (numpy or torch).

        A repeated index (a draw with replacement) caches the mean of its losses; per-cluster
        means are updated incrementally.
        """
        idx = as_numpy("batch_indices", batch_indices)
        loss = as_numpy("per_example_losses", per_example_losses).astype(np.float64)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"batch_indices must hold integers; got dtype {idx.dtype}")
        if loss.shape != idx.shape:
            raise ValueError(
                f"per_example_losses must have one loss per index ({idx.size}); got {loss.size}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self._losses.size):
            raise ValueError(
                f"batch_indices must lie in [0, {self._losses.size}); got "
                f"values from {idx.min()} to {idx.max()}"
            )
        if not np.isfinite(loss).all() or (loss < 0).any():
            raise ValueError(
                "per_example_losses must be finite and >= 0 (pass the loss with "
                "reduction='none', detached); got NaN, inf or a negative value"
            )
        unique, inverse = np.unique(idx, return_inverse=True)
        new = np.bincount(inverse, weights=loss) / np.bincount(inverse)  # (U,) mean per index
        old = self._losses[unique]
        was = ~np.isnan(old)
        clusters = self.index.assignments_[unique]
        c = self.index.n_clusters_
        self._sums += np.bincount(clusters, weights=new - np.where(was, old, 0.0), minlength=c)
        self._counts += np.bincount(clusters[~was], minlength=c)
        self._losses[unique] = new

    def cluster_weights(self) -> np.ndarray:
        """Unnormalised seed weights ``(C,)``: mean measured loss, or the prior if unmeasured."""
        measured = self._counts > 0
        means = np.zeros(self.index.n_clusters_)
        # clip: incremental sums of zeros can drift a hair below 0
        means[measured] = np.maximum(self._sums[measured] / self._counts[measured], 0.0)
        prior = float(means[measured].mean()) if measured.any() else 1.0
        return np.where(measured, means, prior if prior > 0 else 1.0)

    # ----------------------------------------------------------------------------- drawing
    def _draw_seeds(self) -> np.ndarray:
        """``R`` distinct seed clusters from the shared stream, in rank order: successive
        inverse-CDF draws, each drawn cluster's weight then set to 0."""
        weights = self.cluster_weights()
        if not (weights > 0).any():
            weights[:] = 1.0
        seeds = np.empty(self.num_replicas, dtype=np.int64)
        for r in range(self.num_replicas):  # a loop over ranks, not examples
            if not (weights > 0).any():  # fewer positive clusters than ranks: rest uniform
                weights = (np.bincount(seeds[:r], minlength=weights.size) == 0).astype(float)
            cdf = np.cumsum(weights)  # (C,)
            pick = int(np.searchsorted(cdf, self._group_rng.random() * cdf[-1], side="right"))
            # u * total can round up to total: fall back on the last positive cluster
            pick = min(pick, int(np.flatnonzero(weights)[-1]))
            seeds[r] = pick
            weights[pick] = 0.0
        return seeds

    def next_batch(self) -> list[int]:
        """Draw one neighbourhood: ``M * D`` dataset indices (this rank's)."""
        seed = int(self._draw_seeds()[self.rank])
        if self.impostors == "nearest":
            impostors = self.index.nearest_impostors(seed, self.clusters_per_batch - 1)
        else:
            labels = self.index.centroid_labels_
            impostors = self._example_rng.choice(
                np.flatnonzero(labels != labels[seed]), self.clusters_per_batch - 1, replace=False
            )
        clusters = np.concatenate([[seed], impostors])  # (M,): the seed, then its impostors
        batch, small = draw_uniform(
            self._example_rng, [self.index.members(c) for c in clusters], self.examples_per_cluster
        )
        self._batches += 1
        self._with_replacement += small
        self._seed_counts[seed] += 1
        return batch.tolist()

    @property
    def n_examples(self) -> int:
        return int(self._losses.size)

    # ----------------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """Counters since the last ``reset_stats``. ``distinct_seed_clusters``: the clusters
        seeded at least once, summed over the indices used since then (``seed_counts``: per
        cluster of the current index only)."""
        measured = self._counts > 0
        means = self._sums[measured] / self._counts[measured]
        return {
            "batches": self._batches,
            "cluster_draws": self._batches * self.clusters_per_batch,
            "draws_with_replacement": self._with_replacement,
            "distinct_seed_clusters": self._seeded_before + int((self._seed_counts > 0).sum()),
            "n_clusters": int(self.index.n_clusters_),
            "measured_clusters": int(measured.sum()),
            "measured_examples": int((~np.isnan(self._losses)).sum()),
            "mean_cluster_loss": float(means.mean()) if means.size else float("nan"),
            "seed_counts": self._seed_counts.copy(),
        }

    def reset_stats(self) -> None:
        self._batches = 0
        self._with_replacement = 0
        self._seed_counts[:] = 0
        self._seeded_before = 0

    # ----------------------------------------------------------------------------- state
    def _params(self) -> dict[str, Any]:
        params = {
            "clusters_per_batch": self.clusters_per_batch,
            "examples_per_cluster": self.examples_per_cluster,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "n_examples": int(self._losses.size),
        }
        if self.impostors != "nearest":  # absent = nearest: states saved before the option
            params["impostors"] = self.impostors
        return params

    def state_dict(self) -> dict[str, Any]:
        """RNG states, loss cache and counters (plain python / numpy), to resume a run."""
        return {
            **self._stream_state(),
            "losses": self._losses.copy(),
            "counters": {
                "batches": self._batches,
                "with_replacement": self._with_replacement,
                "seed_counts": self._seed_counts.copy(),
                "seeded_before": self._seeded_before,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by ``state_dict`` (against the current index)."""
        self._load_stream_state(state)
        self._losses = np.array(state["losses"], dtype=np.float64)
        self._recount()
        counters = state["counters"]
        self._batches = int(counters["batches"])
        self._with_replacement = int(counters["with_replacement"])
        self._seeded_before = int(counters.get("seeded_before", 0))
        if len(counters["seed_counts"]) == self.index.n_clusters_:
            self._seed_counts = np.array(counters["seed_counts"], dtype=np.int64)
