"""The benchmark's figures: each protocol's validation curves (the seeds' runs, pass by pass)
and each study's trials (completed, pruned, and the best so far), drawn into ``out/figures``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..losses import loss_spec

FIGURES = "figures"


def slug(loss: str) -> str:
    """A folder-safe name of a loss (``pml:ProxyAnchorLoss`` -> ``pml-ProxyAnchorLoss``)."""
    return loss.replace(":", "-")


def draw_figures(
    out: Path, protocol: str, ranked: list[str], runs: dict, *, prefix: str = ""
) -> list[dict]:
    """Each protocol's two figures (``figures/<prefix><protocol>_*.png``) of a plan's runs;
    its searches are ``tuning/<prefix><protocol>-<loss>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for loss in ranked:
        for outcome in runs.values():
            group = outcome.spec.group
            if group["protocol"] != protocol or group["loss"] != loss:
                continue
            key = "val_map_at_r" if protocol == "unseen" else f"val_{loss_spec(loss).own_metric}"
            points = [(r["epoch"], r[key]) for r in outcome.history if key in r]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker=".",
                    alpha=0.8,
                    label=f"{loss} s{group['seed']}{_fold(group)} ({key[4:]})",
                )
    ax.set_xlabel("pass")
    ax.set_ylabel("validation score")
    ax.legend(fontsize=6)
    ax.set_title(f"{prefix}{protocol}: validation during the seeds' training")
    path = f"{FIGURES}/{prefix}{protocol}_validation.png"
    fig.tight_layout()
    fig.savefig(out / path, dpi=90)
    plt.close(fig)
    figures.append({"title": f"{prefix}{protocol}: validation curves", "path": path})
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for loss in ranked:
        rows = _trials(out / "tuning" / f"{prefix}{protocol}-{slug(loss)}")
        done = [(r["trial"], r["val_error"]) for r in rows if r["state"] == "complete"]
        pruned = [(r["trial"], r["val_error"]) for r in rows if r["state"] == "pruned"]
        if done:
            (line,) = ax.plot(*zip(*done, strict=True), "o", label=f"{loss}")
            best = np.minimum.accumulate([v for _, v in done])
            ax.step([t for t, _ in done], best, where="post", color=line.get_color())
            if pruned:
                ax.plot(*zip(*pruned, strict=True), "x", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("trial (x: pruned)")
    ax.set_ylabel("validation error")
    ax.legend(fontsize=6)
    ax.set_title(f"{prefix}{protocol}: each study's trials and best so far")
    path = f"{FIGURES}/{prefix}{protocol}_studies.png"
    fig.tight_layout()
    fig.savefig(out / path, dpi=90)
    plt.close(fig)
    figures.append({"title": f"{prefix}{protocol}: studies", "path": path})
    return figures


def _trials(folder: Path) -> list[dict]:

    path = folder / "trials.csv"
    if not path.is_file():
        return []
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return [
        {"trial": int(r["trial"]), "state": r["state"], "val_error": float(r["val_error"])}
        for r in rows
        if r["val_error"] not in ("", "nan")
    ]


def _fold(group: dict) -> str:
    """`` f<k>`` for the run of class fold k (``--folds``), else nothing."""
    return f" f{group['fold']}" if "fold" in group else ""
