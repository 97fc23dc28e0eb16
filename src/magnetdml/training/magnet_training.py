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
from ..evaluation import KNearestClusters, fit_knc
from ..losses import MagnetLoss
from ..sampling import NeighbourhoodSampler
from .config import EvalConfig, IndexConfig, SamplerConfig
from .sigma2 import SIGMA2_MOMENTUM, RunningSigma2


class MagnetTraining:
    """Index, sampler, loss cache, ``sigma^2`` and refresh of Magnet training on ``labels``
    ``(N,)`` (the training set's class ids, in the order the batches index it). The defaults
    are the trainer's (``magnetdml train``): the same config fields' defaults."""

    def __init__(
        self,
        labels,
        *,
        clusters_per_class: int = IndexConfig.clusters_per_class,
        clusters_per_batch: int = SamplerConfig.clusters_per_batch,
        examples_per_cluster: int = SamplerConfig.examples_per_cluster,
        alpha: float = 1.0,
        scale: float = 1.0,
        variance_momentum: float = SIGMA2_MOMENTUM,
        neighbours: int = EvalConfig.neighbours,
        seed: int = 0,
        impostors: str = SamplerConfig.impostors,
    ) -> None:
        self.labels = as_label_vector("labels", labels)
        self.index = ClusterIndex(
            clusters_per_class=check_int("clusters_per_class", clusters_per_class, minimum=1),
            seed=seed,
        )
        self.loss_fn = MagnetLoss(alpha=alpha, scale=scale, reduction="none")
        self.running_sigma2 = RunningSigma2(
            check_float("variance_momentum", variance_momentum, minimum=0.0, maximum=1.0)
        )
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self._sampler_args = {
            "clusters_per_batch": clusters_per_batch,
            "examples_per_cluster": examples_per_cluster,
            "seed": seed,
            "impostors": impostors,
        }
        self.sampler: NeighbourhoodSampler | None = None
        self.refreshes = 0

    def refresh(self, embeddings) -> None:
        """Re-cluster every class from ``embeddings (N, E)`` of the whole training set (one
        eval-mode pass, paper §3.2; warm-started after the first) and point the sampler at the
        new clusters, recomputing their losses from the per-example cache."""
        if embeddings is None or len(embeddings) != len(self.labels):
            raise ValueError(
                f"refresh needs the embeddings of all {len(self.labels)} training "
                "examples (one row each, in the labels' order); got "
                f"{None if embeddings is None else len(embeddings)} rows"
            )
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
            raise ValueError(
                f"indices must name the {len(embeddings)} embedded examples; got {len(indices)}"
            )
        device = embeddings.device
        labels = torch.as_tensor(self.labels[indices], device=device)
        clusters = torch.as_tensor(self.index.assignments_[indices], device=device)
        per_example = self.loss_fn(embeddings, labels, clusters)  # (B,)
        self.sampler.update_losses(indices, per_example.detach().double().cpu().numpy())
        self.running_sigma2.update(float(self.loss_fn.last_variance))
        return per_example.mean()

    @property
    def sigma2(self) -> float | None:
        """The running ``sigma^2`` of the batch variances (paper §3.3); ``None`` before the
        first batch."""
        return self.running_sigma2.value

    def classifier(self) -> KNearestClusters:
        """kNC over the current index with the lengthscale ``sigma^2 / scale`` (the trainer's
        :func:`~magnetdml.evaluation.fit_knc`)."""
        self._check_ready()
        if self.sigma2 is None:
            raise ValueError("no sigma^2 yet: call loss() on at least one batch first")
        return fit_knc(
            index=self.index,
            sigma2=self.sigma2,
            scale=self.loss_fn.scale,
            neighbours=self.neighbours,
        )

    def _check_ready(self) -> None:
        if self.sampler is None:
            raise ValueError(
                "call refresh(embeddings of the training set) first: the sampler "
                "and the loss need the cluster index"
            )
