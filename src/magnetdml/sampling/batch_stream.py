"""What the batch samplers share: an endless, seeded, resumable stream of batches.

A batch is ``G`` groups (clusters or classes) x ``S`` examples. Two random streams: the group
stream is the same on every torchrun rank (so ranks can agree on distinct groups per step),
the example stream is the rank's own (drawing examples must not desynchronise the shared
stream). ``len`` is ``batches_per_epoch`` or ``max(1, N // (G * S * R))``; each epoch
continues the streams.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from .._validation import check_int


def draw_uniform(
    rng: np.random.Generator, groups: Sequence[np.ndarray], per_group: int
) -> tuple[np.ndarray, int]:
    """Draw ``per_group`` items uniformly from each array in ``groups``: ``(G * per_group,)``
    grouped in order, and how many groups were smaller than ``per_group``.

    Without replacement, except that a group with ``s < per_group`` items gives all ``s`` (in
    random order) and then ``per_group - s`` draws with replacement: as many distinct points as
    it has, so its variance estimate uses them all.
    """
    out = np.empty((len(groups), per_group), dtype=np.int64)  # (G, per_group)
    small = 0
    for g, members in enumerate(groups):  # a loop over the M groups of a batch, not examples
        size = members.size
        if size >= per_group:
            out[g] = members[rng.choice(size, per_group, replace=False)]
        else:
            small += 1
            pick = np.concatenate([rng.permutation(size), rng.integers(0, size, per_group - size)])
            out[g] = members[pick]
    return out.reshape(-1), small


def check_replicas(num_replicas: Any, rank: Any) -> tuple[int, int]:
    """Validate the torchrun world size and this process's rank."""
    num_replicas = check_int(
        "num_replicas",
        num_replicas,
        minimum=1,
        fix="the torchrun world size; 1 without distributed training",
    )
    rank = check_int("rank", rank, minimum=0)
    if rank >= num_replicas:
        raise ValueError(f"rank must be < num_replicas ({num_replicas}); got {rank}")
    return num_replicas, rank


class BatchStream(Sampler[list[int]]):
    """Base of ``NeighbourhoodSampler``, ``ClassBalancedSampler`` and ``UniformSampler``
    (whose one group is the whole dataset). Subclasses set
    ``batch_size`` and ``n_examples`` and implement ``next_batch`` and ``_params``."""

    batch_size: int
    n_examples: int

    def __init__(
        self, batches_per_epoch: int | None, seed: int, num_replicas: int, rank: int
    ) -> None:
        super().__init__()
        if batches_per_epoch is not None:
            batches_per_epoch = check_int(
                "batches_per_epoch",
                batches_per_epoch,
                minimum=1,
                fix="or None for one pass over the examples",
            )
        self.batches_per_epoch = batches_per_epoch
        self.seed = check_int("seed", seed)
        self.num_replicas, self.rank = check_replicas(num_replicas, rank)
        self._group_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        self._example_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, rank]))

    def next_batch(self) -> list[int]:
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(len(self)):
            yield self.next_batch()

    def __len__(self) -> int:
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        return max(1, self.n_examples // (self.batch_size * self.num_replicas))

    def _stream_state(self) -> dict[str, Any]:
        return {
            "params": self._params(),
            "group_rng": self._group_rng.bit_generator.state,
            "example_rng": self._example_rng.bit_generator.state,
        }

    def _load_stream_state(self, state: dict[str, Any]) -> None:
        """Check ``state`` was saved by a sampler like this one; restore both streams."""
        mine = self._params()
        theirs = state.get("params", {}) if isinstance(state, dict) else {}
        wrong = {
            k: (theirs.get(k), mine.get(k))
            for k in sorted({*mine, *theirs})
            if theirs.get(k) != mine.get(k)
        }
        if wrong:
            detail = ", ".join(f"{k} saved {a} vs {b}" for k, (a, b) in wrong.items())
            raise ValueError(
                f"state does not match this sampler ({detail}); build the "
                "sampler with the saved parameters"
            )
        self._group_rng.bit_generator.state = state["group_rng"]
        self._example_rng.bit_generator.state = state["example_rng"]
