"""Magnet Loss in your own training loop: one object owns the bookkeeping.

What the library's trainer does around the loss (paper §3.2-3.3), for any model and loop:
the per-class k-means index of the training embeddings, the neighbourhood sampler that seeds
on high-loss clusters, the per-example loss cache it seeds from, the running ``sigma^2`` and
the refresh that must update all of them at once (a refresh that forgets the sampler leaves
its seed weights on the old clusters)::

    magnet = md.MagnetTraining(train_labels, clusters_per_class=4, alpha=1.0, scale=2.0)
    magnet.refresh(md.embed(model, train_inputs))        # the first index
    for epoch in range(epochs):
        for batch in magnet.batches(steps):              # M x D example indices
            x = train_inputs[batch]
            loss = magnet.loss(model(x), batch)          # caches losses, updates sigma^2
            optimiser.zero_grad(); loss.backward(); optimiser.step()
        magnet.refresh(md.embed(model, train_inputs))    # re-cluster; sampler follows
    predicted = magnet.classifier().predict(md.embed(model, test_inputs))   # kNC

``loss`` is eq. 5 with the temperature ``scale`` (:class:`~magnetdml.losses.MagnetLoss`),
averaged over the batch; ``classifier`` is kNC with ``L`` nearest centres and the lengthscale
``sigma^2 / scale`` consistent with training.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .._validation import as_label_vector, check_float, check_int
from ..clustering import ClusterIndex
from ..evaluation import KNearestClusters
from ..losses import MagnetLoss
from ..sampling import NeighbourhoodSampler


class MagnetTraining:
    """Index, sampler, loss cache, ``sigma^2`` and refresh of Magnet training on ``labels``
    ``(N,)`` (the training set's class ids, in the order the batches index it)."""

    def __init__(self, labels, *, clusters_per_class: int = 8, clusters_per_batch: int = 12,
                 examples_per_cluster: int = 4, alpha: float = 1.0, scale: float = 1.0,
                 variance_momentum: float = 0.9, neighbours: int = 128, seed: int = 0,
                 impostors: str = "nearest") -> None:
        self.labels = as_label_vector("labels", labels)
        self.index = ClusterIndex(clusters_per_class=check_int(
            "clusters_per_class", clusters_per_class, minimum=1), seed=seed)
        self.loss_fn = MagnetLoss(alpha=alpha, scale=scale, reduction="none")
        self.momentum = check_float("variance_momentum", variance_momentum, minimum=0.0,
                                    maximum=1.0)
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self._sampler_args = {"clusters_per_batch": clusters_per_batch,
                              "examples_per_cluster": examples_per_cluster, "seed": seed,
                              "impostors": impostors}
        self.sampler: NeighbourhoodSampler | None = None
        self.variance: float | None = None      # running sigma^2 (paper §3.3)
        self.refreshes = 0

    def refresh(self, embeddings) -> None:
        """Re-cluster every class from ``embeddings (N, E)`` of the whole training set (one
        eval-mode pass, paper §3.2; warm-started after the first) and point the sampler at the
        new clusters, recomputing their losses from the per-example cache."""
        if embeddings is None or len(embeddings) != len(self.labels):
            raise ValueError(f"refresh needs the embeddings of all {len(self.labels)} training "
                             "examples (one row each, in the labels' order); got "
                             f"{None if embeddings is None else len(embeddings)} rows")
        if self.refreshes:
            self.index.refresh(embeddings, self.labels)
        else:
            self.index.fit(embeddings, self.labels)
        if self.sampler is None:
            self.sampler = NeighbourhoodSampler(self.index, **self._sampler_args)
        else:
            self.sampler.set_index(self.index)
        self.refreshes += 1

    def batches(self, steps: int) -> Iterator[list[int]]:
        """``steps`` neighbourhoods: lists of ``M * D`` training indices (seed cluster first,
        then its nearest impostor clusters), drawn from the current cluster losses."""
        self._check_ready()
        for _ in range(check_int("steps", steps, minimum=0)):
            yield self.sampler.next_batch()

    def loss(self, embeddings: torch.Tensor, indices) -> torch.Tensor:
        """The batch's Magnet Loss (mean over its examples), for ``embeddings (B, E)`` of the
        training examples ``indices (B,)``; caches the per-example losses for the sampler and
        updates the running ``sigma^2``."""
        self._check_ready()
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) != len(embeddings):
            raise ValueError(f"indices must name the {len(embeddings)} embedded examples; got "
                             f"{len(indices)}")
        device = embeddings.device
        labels = torch.as_tensor(self.labels[indices], device=device)
        clusters = torch.as_tensor(self.index.assignments_[indices], device=device)
        per_example = self.loss_fn(embeddings, labels, clusters)                # (B,)
        self.sampler.update_losses(indices, per_example.detach().double().cpu().numpy())
        batch_variance = float(self.loss_fn.last_variance)
        self.variance = batch_variance if self.variance is None else (
            self.momentum * self.variance + (1 - self.momentum) * batch_variance)
        return per_example.mean()

    def classifier(self) -> KNearestClusters:
        """kNC over the current index with the lengthscale ``sigma^2 / scale``."""
        self._check_ready()
        if self.variance is None:
            raise ValueError("no sigma^2 yet: call loss() on at least one batch first")
        return KNearestClusters(neighbours=self.neighbours).fit(
            self.index, self.variance / self.loss_fn.scale)

    def _check_ready(self) -> None:
        if self.sampler is None:
            raise ValueError("call refresh(embeddings of the training set) first: the sampler "
                             "and the loss need the cluster index")
