"""When to rebuild the cluster index: every epoch, every N iterations, or on measured drift.

The paper refreshes at a fixed rate (every epoch on small datasets, every 1000 iterations on
ImageNet) and names adaptive refreshing as future work (§5). The adaptive schedule embeds a
fixed probe subset every few iterations and refreshes when it has moved, relative to its own
spread, by more than ``drift_threshold``:

    drift = mean_n ||e_now(n) - e_ref(n)||^2 / mean_n ||e_ref(n) - mean(e_ref)||^2

which, like the loss, is invariant to the global scale of the embedding.
"""

from __future__ import annotations

import numpy as np


class RefreshSchedule:
    """``every_iterations = 0`` and ``drift_threshold = 0``: refresh after every epoch."""

    def __init__(
        self, *, every_iterations: int = 0, drift_threshold: float = 0.0, check_every: int = 25
    ) -> None:
        self.every_iterations = every_iterations
        self.drift_threshold = drift_threshold
        self.check_every = max(1, check_every)
        self.reference: np.ndarray | None = None
        self.last_drift = 0.0

    @property
    def adaptive(self) -> bool:
        return self.drift_threshold > 0

    @property
    def at_epoch_end(self) -> bool:
        return self.every_iterations == 0 and not self.adaptive

    def wants_probe(self, iteration: int) -> bool:
        """Whether the loop should embed the probe set now (adaptive schedule only)."""
        return self.adaptive and iteration % self.check_every == 0

    def due(self, iteration: int, probe: np.ndarray | None = None) -> bool:
        """Whether to refresh after ``iteration`` (counted from 1) given the probe embedding."""
        if self.every_iterations:
            return iteration % self.every_iterations == 0
        if self.adaptive and probe is not None and self.reference is not None:
            self.last_drift = drift(self.reference, probe)
            return self.last_drift > self.drift_threshold
        return False

    def refreshed(self, probe: np.ndarray | None) -> None:
        """Record the probe embedding at a refresh, the reference for later drift."""
        self.reference = probe


def drift(reference: np.ndarray, current: np.ndarray) -> float:
    """Mean squared displacement of the probe points over their spread (scale invariant)."""
    spread = float(((reference - reference.mean(axis=0)) ** 2).sum(axis=1).mean())
    moved = float(((current - reference) ** 2).sum(axis=1).mean())
    return moved / spread if spread > 0 else float("inf")
