"""Uniformly shuffled batches: the standard protocol of softmax training.

Every pass over the data is a fresh random permutation of all training examples, cut into
batches of ``B`` (the tail that does not fill a batch is dropped, as ``DataLoader(shuffle=True,
drop_last=True)`` does). With many classes a batch then holds about ``B`` distinct classes,
where the class-balanced sampler holds only ``P``: a softmax classifier trained on ``P`` classes
at a time sees its other ``C - P`` logits pushed down at every step and its recent classes'
logits, carried by momentum, predicted for everything (on Omniglot's 675 training characters
with ``P = 6`` its loss stays at chance; see docs/results.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_label_vector, check_int
from .batch_stream import BatchStream


class UniformSampler(BatchStream):
    """Batches of ``batch_size`` dataset indices drawn from shuffled passes over the data.

    Distributed: every rank shares the permutation stream and takes the ``r``-th slice of each
    global batch of ``R * batch_size`` consecutive positions, so the ranks' batches are
    disjoint and together cover a pass. ``len`` is ``batches_per_epoch`` or
    ``max(1, N // (batch_size * R))``; each epoch continues the stream where the last left it.
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(batches_per_epoch, seed, num_replicas, rank)
        labels = as_label_vector("labels", labels)
        self.n_examples = int(labels.size)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        if self.batch_size * self.num_replicas > self.n_examples:
            raise ValueError(
                f"batch_size x processes must be <= the {self.n_examples} "
                f"training examples; got {self.batch_size} x "
                f"{self.num_replicas} (lower the batch size)"
            )
        self._pass_state = self._group_rng.bit_generator.state  # replays the permutation
        self._order = self._group_rng.permutation(self.n_examples)
        self._position = 0
        self.reset_stats()

    def next_batch(self) -> list[int]:
        """Draw one batch: ``batch_size`` dataset indices (this rank's)."""
        step = self.batch_size * self.num_replicas
        if self._position + step > self.n_examples:  # drop the tail, start a new pass
            self._pass_state = self._group_rng.bit_generator.state
            self._order = self._group_rng.permutation(self.n_examples)
            self._position = 0
            self._passes += 1
        start = self._position + self.rank * self.batch_size
        batch = self._order[start : start + self.batch_size]
        self._position += step
        self._batches += 1
        return batch.tolist()

    def stats(self) -> dict[str, int]:
        return {"batches": self._batches, "passes_started": self._passes}

    def reset_stats(self) -> None:
        self._batches = 0
        self._passes = 0

    def _params(self) -> dict[str, int]:
        return {
            "batch_size": self.batch_size,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "n_examples": self.n_examples,
        }

    def state_dict(self) -> dict[str, Any]:
        """The stream as plain python: the generator state before the current pass's
        permutation (replayed on load, so the permutation itself is never stored) and the
        position in it."""
        state = self._stream_state()
        return {
            **state,
            "pass_rng": self._pass_state,
            "position": self._position,
            "counters": {"batches": self._batches, "passes": self._passes},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_stream_state(state)
        replay = np.random.default_rng()
        replay.bit_generator.state = state["pass_rng"]
        self._pass_state = state["pass_rng"]
        self._order = replay.permutation(self.n_examples)
        self._position = int(state["position"])
        self._batches = int(state["counters"]["batches"])
        self._passes = int(state["counters"]["passes"])
