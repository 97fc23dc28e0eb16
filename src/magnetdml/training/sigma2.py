"""The running ``sigma^2`` of cluster losses (paper §3.3): the one place it is tracked.

Magnet Loss (and cluster NCA) standardise each batch by its variance ``s2`` (one scalar,
eq. 5). kNC classifies with a running average of those ``s2``,

    sigma^2 <- s2_1                                             (the first batch)
    sigma^2 <- momentum * sigma^2 + (1 - momentum) * s2_t       (every later batch)

and the lengthscale ``sigma^2 / s`` (:func:`magnetdml.evaluation.knc_lengthscale`). The
trainer and :class:`~magnetdml.training.MagnetTraining` both keep one :class:`RunningSigma2`;
its default momentum is :data:`SIGMA2_MOMENTUM`, which ``train.variance_momentum`` also uses.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Weight of the previous ``sigma^2`` in the running average (the trainer's and the own-loop
#: helper's default): about the last 10 batches count.
SIGMA2_MOMENTUM = 0.9


@dataclass
class RunningSigma2:
    """Exponential moving average of the batch variances ``s2``; ``value`` is ``sigma^2``
    (``None`` before the first batch)."""

    momentum: float = SIGMA2_MOMENTUM
    value: float | None = None

    def update(self, s2: float) -> float:
        """Fold one batch's ``s2`` in; returns the new ``sigma^2``."""
        s2 = float(s2)
        self.value = (
            s2 if self.value is None else (self.momentum * self.value + (1 - self.momentum) * s2)
        )
        return self.value
