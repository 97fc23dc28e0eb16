"""The analysis of ``finegrained`` (:mod:`.finegrained`): tables, the paper's claims, figures.

Per run, the final (best-validation) model re-embeds the data once (cached in
``measured.json``, keyed by the run's summary) for Error@1 and Error@5 with both protocols:
kNC over the run's index (the losses without one: a k-means index of their embeddings) and
soft kNN (``k = 128``). Per target and start, the benchmark's tables of its runs (mean ± sd,
paired differences against the best loss, cost); the convergence (paper Fig. 5) and the
curves are :mod:`.finegrained_curves`.
"""

from __future__ import annotations

from pathlib import Path

from .benchmark_report import plan_section
from .classification import own_metric, own_protocol, relative_error
from .finegrained_claims import PAPER_HIERARCHY, hierarchy_claims, target_claims
from .finegrained_curves import speed, target_figures
from .finegrained_diagnostics import diagnostics_rows
from .hierarchy import cached_measurement, measure_run
from .runner import RunOutcome, mean_std, metric, save_results

#: Paper Table 1 Error@1 (softmax, triplet, Magnet) and hierarchy recovery (§4.3, Fig. 4f).
PAPER = {
    "Stanford Dogs": (0.266, 0.358, 0.249),
    "Oxford Flowers": (0.112, 0.170, 0.086),
    "Oxford-IIIT Pet": (0.113, 0.135, 0.106),
}
MEASURED = "measured.json"


def _measure(outcome: RunOutcome, labels: str | None) -> dict:
    return cached_measurement(outcome, MEASURED, lambda: measure_run(outcome.run_dir, labels))


def analyse(out_dir: Path, runs: dict[str, RunOutcome], tuned: dict | None = None) -> dict:
    """The results dict of the experiment (see :mod:`.runner` for its keys); ``tuned``: the
    tuning stage's entries (for the benchmark's tables)."""
    groups: dict[tuple, list[RunOutcome]] = {}
    for o in runs.values():
        g = o.spec.group
        if g.get("stage") != "pretraining":
            groups.setdefault((g["task"], g["target"], g["start"], g["loss"]), []).append(o)
    measured = {
        o.spec.name: _measure(o, "fine" if key[0] == "hierarchy" else None)
        for key, group in groups.items()
        for o in group
    }
    rows, margins, controls, speeds, claims, figures = [], [], [], [], [], []
    benchmark: dict = {"protocols": {}, "tables": []}
    targets = sorted({k[1] for k in groups if k[0] == "classification"})
    for target in targets:
        for start in ("pretrained", "scratch"):
            by_loss = {
                k[3]: v for k, v in groups.items() if k[:3] == ("classification", target, start)
            }
            if not by_loss:
                continue
            for loss, group in by_loss.items():
                rows.append(_row(target, start, loss, group, measured))
            margins += _margins(target, start, by_loss)
            if start == "pretrained":
                speeds += speed(target, by_loss)
                figures += target_figures(out_dir, target, by_loss)
            group = [o for runs_ in by_loss.values() for o in runs_]
            section = plan_section(
                out_dir, group, tuned, f"{target}-{start}-", f"{target}, {start} start"
            )
            benchmark["protocols"].update(section.get("protocols", {}))
            benchmark["tables"] += section.get("tables", [])
            figures += section.get("figures", [])
        controls += _controls(target, groups)
        claims += target_claims(target, rows, margins, speeds)
    hierarchy_rows = [
        _hierarchy_row(k[1], k[3], group, measured)
        for k, group in groups.items()
        if k[0] == "hierarchy"
    ]
    claims += hierarchy_claims(hierarchy_rows)
    results = {
        "tables": [
            {
                "title": "Test error on held-out drawers (mean over seeds; own protocol: kNC for "
                "Magnet, soft kNN for the others)",
                "rows": rows,
            },
            {
                "title": "Relative error of Magnet (own protocols), paired by seed (paper: Dogs "
                "-6% / -30%, Flowers -23% / -49%, Pets -6% / -21% vs softmax / triplet)",
                "rows": margins,
            },
            {
                "title": "What the pretrained start does (own protocol, mean over seeds)",
                "rows": controls,
            },
            {
                "title": "Convergence (paper Fig. 5: Magnet reaches triplet's final error 5-30x "
                "sooner; here on the validation drawers: triplet's best validation error), "
                "pretrained start, per seed then averaged",
                "rows": speeds,
            },
            {
                "title": "Hierarchy recovery: trained on pairs of characters, scored on the "
                "characters (paper Error@1 / @5: Magnet 28.6 / 7.8%, softmax 30.9 / "
                "15.0%, triplet 44.6 / 23.4%)",
                "rows": hierarchy_rows,
            },
            {
                "title": "What the runs did (training loss at the scored and the last pass; "
                "Magnet: sigma^2, clusters per class, draws with replacement, refresh time)",
                "rows": diagnostics_rows(groups),
            },
            {
                "title": "Pretraining (softmax on all 964 characters' training drawings; test "
                "errors on the held-out drawers of all 964)",
                "rows": _pretraining_rows(runs),
            },
        ],
        "claims": claims,
        "figures": figures,
        "protocols": benchmark["protocols"],
        "paper": {"table1_error_at_1": PAPER, "hierarchy": PAPER_HIERARCHY},
        "notes": [
            "error_at_1 / error_at_5: the loss's own protocol; knc_* / knn_* both protocols "
            "(the losses without an index: kNC over a k-means index of their final "
            "embeddings). "
            "best_epoch: the pass whose model was scored (validation error, own protocol; "
            "training stopped after `patience` passes without improvement). train_seconds "
            "includes the index refreshes (refresh_seconds). *_std: sample std over seeds.",
            "relative_error = (Magnet - other) / other, own protocols, paired by seed. "
            "error_drop = scratch error - pretrained error (> 0: the pretrained start helps).",
            "The benchmark's tables (one per target and start, as `magnetdml benchmark` "
            "writes them): error_at_1 / error_at_5 by soft kNN for every loss, knc_error "
            "for the cluster losses, classifier_error for the losses with a classifier or "
            "proxies; paired differences per seed against the best loss, 95% t intervals.",
        ],
    }
    results["tables"] += benchmark["tables"]
    save_results(out_dir, results)
    return results


def _stat(values: list) -> tuple:
    return mean_std([None if v is None else float(v) for v in values])


def _row(target: str, start: str, loss: str, group: list[RunOutcome], measured: dict) -> dict:
    own = own_protocol(loss)
    m = [measured[o.spec.name] for o in group]
    row = {"target": target, "start": start, "loss": loss, "seeds": len(group)}
    row["error_at_1"], row["error_at_1_std"] = _stat([x[f"{own}_error_at_1"] for x in m])
    row["error_at_5"], row["error_at_5_std"] = _stat([x[f"{own}_error_at_5"] for x in m])
    for key in ("knc_error_at_1", "knc_error_at_5", "knn_error_at_1", "knn_error_at_5"):
        row[key] = _stat([x[key] for x in m])[0]
    row["best_epoch"] = _stat([_stopping(o).get("best_epoch") for o in group])[0]
    row["train_seconds"] = _stat([metric(o, "train_seconds") for o in group])[0]
    row["refresh_seconds"] = _stat([metric(o, "refresh_seconds") for o in group])[0]
    row["sigma2"] = _stat([metric(o, "sigma2") for o in group])[0]
    return row


def _stopping(outcome: RunOutcome) -> dict:
    return outcome.summary.get("early_stopping") or {}


def _own_error(outcome: RunOutcome) -> float | None:
    return metric(outcome, own_metric(outcome.spec.group["loss"]))


def _margins(target: str, start: str, by_loss: dict[str, list[RunOutcome]]) -> list[dict]:
    magnet = {o.spec.group["seed"]: o for o in by_loss.get("magnet", [])}
    out = []
    for other_loss in ("softmax", "triplet"):
        other = {o.spec.group["seed"]: o for o in by_loss.get(other_loss, [])}
        paired = [
            relative_error(_own_error(magnet[s]), _own_error(other[s]))
            for s in sorted(set(magnet) & set(other))
        ]
        mean, spread = mean_std(paired)
        out.append(
            {
                "target": target,
                "start": start,
                "versus": other_loss,
                "seeds": len(paired),
                "relative_error": mean,
                "relative_std": spread,
            }
        )
    return out


def _controls(target: str, groups: dict) -> list[dict]:
    rows = []
    controlled = [k[3] for k in groups if k[:3] == ("classification", target, "scratch")]
    for loss in controlled:  # the losses with a control from scratch
        pre = groups.get(("classification", target, "pretrained", loss), [])
        scratch = groups.get(("classification", target, "scratch", loss), [])
        a, b = _stat([_own_error(o) for o in pre])[0], _stat([_own_error(o) for o in scratch])[0]
        if a is None and b is None:
            continue
        rows.append(
            {
                "target": target,
                "loss": loss,
                "pretrained_error": a,
                "scratch_error": b,
                "error_drop": None if a is None or b is None else b - a,
                "pretrained_epochs": _stat([_stopping(o).get("best_epoch") for o in pre])[0],
                "scratch_epochs": _stat([_stopping(o).get("best_epoch") for o in scratch])[0],
            }
        )
    return rows


def _hierarchy_row(target: str, loss: str, group: list[RunOutcome], measured: dict) -> dict:
    own = own_protocol(loss)
    m = [measured[o.spec.name] for o in group]
    return {
        "target": target,
        "loss": loss,
        "seeds": len(group),
        "coarse_error": _stat([_own_error(o) for o in group])[0],
        "fine_error_at_1": _stat([x[f"{own}_error_at_1"] for x in m])[0],
        "fine_error_at_1_std": _stat([x[f"{own}_error_at_1"] for x in m])[1],
        "fine_error_at_5": _stat([x[f"{own}_error_at_5"] for x in m])[0],
        "knn_error_at_1": _stat([x["knn_error_at_1"] for x in m])[0],
        "knc_error_at_1": _stat([x["knc_error_at_1"] for x in m])[0],
        "cluster_purity": _stat([x["cluster_purity"] for x in m])[0],
    }


def _pretraining_rows(runs: dict[str, RunOutcome]) -> list[dict]:
    rows = []
    for o in runs.values():
        if o.spec.group.get("stage") != "pretraining":
            continue
        curve = [r.get("knn_error") for r in o.history]
        rows.append(
            {
                "run": o.spec.name,
                "role": o.spec.group["role"],
                "epochs": o.summary.get("epochs"),
                "best_epoch": _stopping(o).get("best_epoch", o.summary.get("epochs")),
                "knn_error": metric(o, "knn_error"),
                "knc_error": metric(o, "knc_error"),
                "knn_error_per_epoch": ", ".join(f"{100 * e:.1f}" for e in curve if e is not None),
                "train_seconds": metric(o, "train_seconds"),
            }
        )
    return rows
