"""Training to convergence (``train.patience``): stop once the validation error has stopped
improving, and keep the best epoch's model.

After every epoch the validation split is scored with the loss's own protocol (paper App. B:
kNC for cluster losses, soft kNN otherwise); both errors go into ``metrics.jsonl`` as
``val_knc_error`` / ``val_knn_error``. A class-disjoint validation split (``data.val_classes``)
is scored by retrieval among its own examples instead (Musgrave et al. 2020): ``val_map_at_r``
and ``val_precision_at_1``, and the validation error is ``1 - MAP@R``. The rule: training stops
after the first epoch ``e`` with

    e - e* >= patience,    e* = argmin_{e' <= e} val_error(e')  (the earliest on ties),

or at ``train.epochs``, whichever comes first; then the weights, loss state, ``sigma^2`` and
cluster index of epoch ``e*`` are restored, and the final evaluation scores that model. The
best state is part of the checkpoint, so an interrupted run resumes with it.

:class:`EarlyStopping` is a part of :class:`~magnetdml.training.trainer.Trainer`.
"""

from __future__ import annotations

import copy

from ..evaluation import evaluate

#: What a class-disjoint validation split is scored by (retrieval among its own examples).
RETRIEVAL_VAL = ("map_at_r", "precision_at_1")


class EarlyStopping:
    """The trainer's validation tracking: ``self.best`` holds epoch ``e*`` and its state."""

    best: dict | None = None

    @property
    def val_metric(self) -> str:
        """``map_at_r`` on a class-disjoint validation split; else the loss's own protocol (its
        spec): ``knc_error`` for cluster losses, else kNN."""
        if self.config.data.val_classes:
            return "map_at_r"
        return self.config.loss.spec().own_metric

    def validation_scores(self) -> tuple[dict, float]:
        """The validation split's scores (see the module docstring) and the error minimised."""
        if self.config.data.val_classes:
            val = self.splits.val
            queries = self.embed(val)
            scores = self.dist.broadcast_object(self.dist.on_main(
                lambda: evaluate(queries, val.labels, metrics=list(RETRIEVAL_VAL))))
            return scores, 1.0 - scores["map_at_r"]
        scores = self.evaluate(self.splits.val)
        return scores, scores[self.val_metric]

    def check_patience(self) -> None:
        if self.config.train.patience and self.splits.val is None:
            raise ValueError(f"train.patience {self.config.train.patience} stops on the "
                             "validation error, but the data has no validation split; set "
                             "data.val_fraction (e.g. 0.1), or train.patience 0 to train all "
                             "train.epochs")

    def track_validation(self, record: dict) -> None:
        """Score the validation split into ``record``; remember this epoch if it is the best."""
        scores, error = self.validation_scores()
        record.update({f"val_{k}": v for k, v in scores.items()})
        if self.best is None or error < self.best["error"]:
            self.best = {"epoch": self.epoch, "error": error, "iteration": self.iteration,
                         "model": copy.deepcopy(self.model.state_dict()),
                         "loss": copy.deepcopy(self.loss_fn.state_dict()),
                         "variance": self.variance,
                         "index": (self.index.state_dict() if self.index is not None
                                   else None),
                         "index_iteration": self.index_iteration}

    def patience_exhausted(self) -> bool:
        patience = self.config.train.patience
        return bool(patience) and self.best is not None \
            and self.epoch - self.best["epoch"] >= patience

    def restore_best(self) -> bool:
        """Put epoch ``e*``'s model, loss, ``sigma^2`` and index back for the final scores;
        return whether there was anything to restore (``e*`` before the last epoch)."""
        if self.best is None or self.best["epoch"] == self.epoch:
            return False
        self.apply_pending_refresh(wait=True)
        self.model.load_state_dict(self.best["model"])
        self.loss_fn.load_state_dict(self.best["loss"])
        self.variance = self.best["variance"]
        if self.index is not None:
            self.index.load_state_dict(self.best["index"])
        # the index clusters epoch e*'s embeddings, which the restored model reproduces
        self.index_iteration = self.iteration if self.best["index_iteration"] == \
            self.best["iteration"] else -1
        self._train_embeddings = None          # cached for the weights just replaced
        return True

    def stopping_summary(self) -> dict:
        if not self.config.train.patience or self.best is None:
            return {}
        return {"early_stopping": {"patience": self.config.train.patience,
                                   "metric": f"val_{self.val_metric}",
                                   "best_epoch": self.best["epoch"],
                                   "best_val_error": self.best["error"],
                                   "last_epoch": self.epoch,
                                   "stopped_early": self.epoch < self.config.train.epochs}}
