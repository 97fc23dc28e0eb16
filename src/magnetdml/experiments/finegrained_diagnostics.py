"""What the fine-grained runs did while training, for explaining who wins (``finegrained``).

Per target, start and loss, from each run's ``metrics.jsonl`` and summary (mean over seeds):
the training loss at the scored pass and at the last one; for Magnet also ``sigma^2`` (its
running batch variance), the clusters per class of its index, the share of the sampler's
cluster draws that had to draw with replacement (clusters smaller than ``D``), and the share
of training time its index refreshes took.
"""

from __future__ import annotations

from ..losses import loss_spec
from .runner import RunOutcome, mean_std, metric


def _at_best(outcome: RunOutcome) -> dict:
    best = (outcome.summary.get("early_stopping") or {}).get("best_epoch")
    for record in outcome.history:
        if record.get("epoch") == best:
            return record
    return outcome.history[-1] if outcome.history else {}


def diagnostics_rows(groups: dict[tuple, list[RunOutcome]]) -> list[dict]:
    """One row per ``(task, target, start, loss)`` group of classification runs."""
    rows = []
    for (task, target, start, loss), group in sorted(groups.items()):
        if task != "classification":
            continue
        best = [_at_best(o) for o in group]
        last = [o.history[-1] if o.history else {} for o in group]
        row = {
            "target": target,
            "start": start,
            "loss": loss,
            "seeds": len(group),
            "loss_at_best": mean_std([b.get("loss") for b in best])[0],
            "loss_at_last": mean_std([b.get("loss") for b in last])[0],
        }
        if loss_spec(loss).uses_index:
            sampler = [b.get("sampler") or {} for b in best]
            row["sigma2"] = mean_std([metric(o, "sigma2") for o in group])[0]
            row["clusters_per_class"] = mean_std(
                [(b.get("clusters_per_class") or {}).get("mean") for b in best]
            )[0]
            row["draws_with_replacement"] = mean_std(
                [
                    s["draws_with_replacement"] / s["cluster_draws"]
                    if s.get("cluster_draws")
                    else None
                    for s in sampler
                ]
            )[0]
            row["refresh_share"] = mean_std(
                [
                    metric(o, "refresh_seconds") / metric(o, "train_seconds")
                    if metric(o, "train_seconds")
                    else None
                    for o in group
                ]
            )[0]
        rows.append(row)
    return rows
