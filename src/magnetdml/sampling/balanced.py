"""Class-balanced batches (P classes x K examples) for the baselines: triplet, contrastive,
lifted structure. Magnet Loss uses ``NeighbourhoodSampler`` instead.

Triplet mining needs positives (two or more examples of a class) and negatives (two or more
classes) inside every batch; uniform shuffling gives few positives when there are many
classes, so we draw ``P`` distinct classes uniformly, then ``K`` examples of each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_label_vector, check_int
from .batch_stream import BatchStream, draw_uniform


class ClassBalancedSampler(BatchStream):
    """Batches of ``P`` classes x ``K`` examples: lists of ``P * K`` dataset indices, the
    ``K`` of one class together, for ``DataLoader(batch_sampler=...)``.

    Classes are drawn uniformly without replacement; examples uniformly without replacement,
    except that a class with fewer than ``K`` examples gives all of them plus draws with
    replacement (counted in ``stats()``). Distributed: every rank shares the class stream and
    takes the ``r``-th block of ``R * P`` distinct classes (when the dataset has that many;
    otherwise each rank's ``P`` are distinct but ranks may overlap). ``len`` is
    ``batches_per_epoch`` or ``max(1, N // (P * K * R))``.
    """

    def __init__(
        self,
        labels: Any,
        classes_per_batch: int,
        examples_per_class: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(batches_per_epoch, seed, num_replicas, rank)
        labels = as_label_vector("labels", labels)
        self.classes_per_batch = check_int(
            "classes_per_batch",
            classes_per_batch,
            minimum=2,
            fix="negatives need a second class in the batch",
        )
        self.examples_per_class = check_int(
            "examples_per_class",
            examples_per_class,
            minimum=2,
            fix="a positive pair needs two examples of a class",
        )
        self.batch_size = self.classes_per_batch * self.examples_per_class
        self.classes_, inverse = np.unique(labels, return_inverse=True)
        if self.classes_.size < self.classes_per_batch:
            raise ValueError(
                f"classes_per_batch must be <= the {self.classes_.size} classes "
                f"in labels; got {self.classes_per_batch} (lower it, e.g. "
                "--sampler.classes_per_batch, and raise examples_per_class to "
                "keep the batch size)"
            )
        self.n_examples = int(labels.size)
        # CSR of examples per class: members of class i are order[offsets[i]:offsets[i+1]].
        self._order = np.argsort(inverse, kind="stable")
        self._offsets = np.concatenate([[0], np.cumsum(np.bincount(inverse))])
        self.reset_stats()

    def _draw_classes(self) -> np.ndarray:
        """This rank's ``P`` class positions (into ``classes_``) from the shared stream."""
        p, r, n = self.classes_per_batch, self.num_replicas, self.classes_.size
        if p * r <= n:
            return self._group_rng.choice(n, p * r, replace=False)[self.rank * p :][:p]
        every = [self._group_rng.choice(n, p, replace=False) for _ in range(r)]
        return every[self.rank]

    def next_batch(self) -> list[int]:
        """Draw one batch: ``P * K`` dataset indices (this rank's)."""
        classes = self._draw_classes()
        groups = [self._order[self._offsets[c] : self._offsets[c + 1]] for c in classes]
        batch, small = draw_uniform(self._example_rng, groups, self.examples_per_class)
        self._batches += 1
        self._with_replacement += small
        return batch.tolist()

    def stats(self) -> dict[str, int]:
        return {
            "batches": self._batches,
            "class_draws": self._batches * self.classes_per_batch,
            "draws_with_replacement": self._with_replacement,
        }

    def reset_stats(self) -> None:
        self._batches = 0
        self._with_replacement = 0

    def _params(self) -> dict[str, int]:
        return {
            "classes_per_batch": self.classes_per_batch,
            "examples_per_class": self.examples_per_class,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "n_examples": self.n_examples,
        }

    def state_dict(self) -> dict[str, Any]:
        """RNG states and counters (plain python), to resume the same stream."""
        return {
            **self._stream_state(),
            "counters": {"batches": self._batches, "with_replacement": self._with_replacement},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_stream_state(state)
        self._batches = int(state["counters"]["batches"])
        self._with_replacement = int(state["counters"]["with_replacement"])
