"""Training to convergence (``train.patience``): stop once the validation error has stopped
improving, and keep the best epoch's model.

After every epoch the validation split is scored with the loss's own protocol (paper App. B:
kNC for cluster losses, soft kNN otherwise); both errors go into ``metrics.jsonl`` as
``val_knc_error`` / ``val_knn_error``. The rule: training stops after the first epoch ``e`` with

    e - e* >= patience,    e* = argmin_{e' <= e} val_error(e')  (the earliest on ties),

or at ``train.epochs``, whichever comes first; then the weights, loss state, ``sigma^2`` and
cluster index of epoch ``e*`` are restored, and the final evaluation scores that model. The
best state is part of the checkpoint, so an interrupted run resumes with it.

:class:`EarlyStopping` is one part of :class:`~magnetdml.training.trainer.Trainer`: it keeps
epoch ``e*`` and decides when to stop; the trainer hands it the scores and the state to keep,
and puts that state back (:meth:`~magnetdml.training.trainer.Trainer.restore_best`).
"""

from __future__ import annotations

from collections.abc import Callable


class EarlyStopping:
    """Validation tracking. State: ``best``, epoch ``e*``'s ``{"epoch", "error", ...}`` with
    the state the trainer asked to keep (``None`` before the first validation score)."""

    def __init__(self, patience: int, epochs: int, metric: str) -> None:
        self.patience, self.epochs = patience, epochs
        self.metric = metric  # knc_error (cluster losses) or knn_error
        self.best: dict | None = None

    def check(self, has_validation: bool) -> None:
        if self.patience and not has_validation:
            raise ValueError(
                f"train.patience {self.patience} stops on the validation error, "
                "but the data has no validation split; set data.val_fraction "
                "(e.g. 0.1), or train.patience 0 to train all train.epochs"
            )

    def update(self, epoch: int, scores: dict, state: Callable[[], dict]) -> None:
        """Remember ``epoch`` (with ``state()``) if its validation error is the best so far."""
        error = scores[self.metric]
        if self.best is None or error < self.best["error"]:
            self.best = {"epoch": epoch, "error": error, **state()}

    def exhausted(self, epoch: int) -> bool:
        return (
            bool(self.patience)
            and self.best is not None
            and epoch - self.best["epoch"] >= self.patience
        )

    def summary(self, epoch: int) -> dict:
        if not self.patience or self.best is None:
            return {}
        return {
            "early_stopping": {
                "patience": self.patience,
                "metric": f"val_{self.metric}",
                "best_epoch": self.best["epoch"],
                "best_val_error": self.best["error"],
                "last_epoch": epoch,
                "stopped_early": epoch < self.epochs,
            }
        }
