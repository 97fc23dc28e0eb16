"""The benchmark's numbers and pages: mean ± sd per loss, paired differences against the best
loss with 95% intervals, cost, validation curves and each study's trials.

A paired difference compares two losses seed by seed: the runs of seed ``i`` of every loss
share the data split and differ only in the loss (and its tuned configuration), so the mean of
``d_i = m_loss(i) - m_best(i)`` over the ``S`` seeds has the Student-t interval
``mean ± t_{0.975, S-1} sd(d) / sqrt(S)`` (none with one seed). The pages are rendered by the
project's one report renderer (:mod:`magnetdml.reporting.page`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..losses import loss_spec
from ..reporting.page import Page, render_html, render_markdown
from .benchmark_figures import FIGURES, draw_figures, slug
from .run_stage import RunOutcome

#: Test-split scores per protocol (``summary`` keys; ``unseen`` ones from its section).
SEEN_SCORES = (
    "error_at_1",
    "error_at_5",
    "knc_error",
    "knc_error_at_5",
    "classifier_error",
    "classifier_error_at_5",
)
UNSEEN_SCORES = ("map_at_r", "r_precision", "precision_at_1", "recall_at_1", "nmi", "f1")
#: The headline metric of each protocol, and whether lower is better.
HEADLINE = {"seen": ("error_at_1", True), "unseen": ("map_at_r", False)}


def paired_difference(values: list[float], best: list[float]) -> dict:
    """Mean of ``values[i] - best[i]`` and its 95% Student-t interval (None with one pair)."""
    from scipy import stats

    d = np.asarray(values, np.float64) - np.asarray(best, np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return {"mean": mean, "low": None, "high": None, "n": int(d.size)}
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(d.size)}


def format_difference(d: dict) -> str:
    """A :func:`paired_difference` in points: ``+1.26 [+0.66, +1.85]`` (no interval with one
    pair)."""
    interval = "" if d["low"] is None else f" [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
    return f"{100 * d['mean']:+.2f}{interval}"


def _mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the runs of one seed (its class folds; one run: its scores)."""
    shared = set.intersection(*(set(s) for s in scores))
    return {m: float(np.mean([s[m] for s in scores])) for m in scores[0] if m in shared}


def _scores(outcome: RunOutcome, protocol: str) -> dict[str, float]:
    summary = outcome.summary
    if protocol == "unseen":
        section = summary.get("unseen") or {}
        return {m: float(section[m]) for m in UNSEEN_SCORES if section.get(m) is not None}
    own = loss_spec(outcome.spec.group["loss"]).own_scores  # kNC: a cluster loss's own only
    return {
        m: float(summary[m])
        for m in SEEN_SCORES
        if summary.get(m) is not None and (own == "knc" or not m.startswith("knc"))
    }


def analyse(
    out: Path, runs: dict[str, RunOutcome], tuned: dict, plans: dict, *, prefix: str = ""
) -> dict:
    """``protocols`` (per loss: tuned values, per-seed scores, mean, sd, cost; the best loss
    and the paired differences), ``tables`` and ``figures`` (drawn into ``out/figures``) of
    the ``runs`` of one plan (:mod:`.benchmark_plan`) for each protocol of ``plans``; ``tuned``
    holds its searches as ``<prefix><protocol>-<loss>`` (the plan's ``prefix``, which also
    starts its figures' names)."""
    (out / FIGURES).mkdir(exist_ok=True)
    protocols, tables, figures = {}, [], []
    for protocol in plans:
        headline, lower = HEADLINE[protocol]
        losses = {}
        for outcome in runs.values():
            if outcome.spec.group["protocol"] != protocol:
                continue
            loss, seed = outcome.spec.group["loss"], outcome.spec.group["seed"]
            entry = losses.setdefault(loss, {"seeds": {}, "runs": {}})
            # a seed's runs: one, or one per class fold (--folds), its scores their mean
            entry["runs"].setdefault(seed, []).append(outcome)
        for loss, entry in losses.items():
            search = tuned[f"{prefix}{protocol}-{slug(loss)}"]
            for seed, seed_runs in entry["runs"].items():
                entry["seeds"][seed] = _mean_scores([_scores(o, protocol) for o in seed_runs])
            outcomes = [o for s in sorted(entry["runs"]) for o in entry["runs"][s]]
            metrics = sorted(
                {m for s in entry["seeds"].values() for m in s},
                key=(SEEN_SCORES + UNSEEN_SCORES).index,
            )
            values = {
                m: [entry["seeds"][s].get(m) for s in sorted(entry["seeds"])] for m in metrics
            }
            entry.update(
                {
                    "tuned": search["params"],
                    "val_error": search["val_error"],
                    "trials": search["trials"],
                    "pruned": search.get("pruned"),
                    "tuning_seconds": search.get("search_seconds"),
                    "mean": {m: float(np.mean(v)) for m, v in values.items()},
                    "sd": {
                        m: float(np.std(v, ddof=1)) if len(v) > 1 else None
                        for m, v in values.items()
                    },
                    "train_seconds": float(  # per seed: all of its folds' runs
                        np.mean(
                            [
                                sum(o.summary["train_seconds"] for o in seed_runs)
                                for seed_runs in entry["runs"].values()
                            ]
                        )
                    ),
                    "images_per_second": float(
                        np.mean([o.summary.get("images_per_second") or 0 for o in outcomes])
                    ),
                    "epochs": [o.summary.get("epochs") for o in outcomes],
                    "seeds": {str(s): v for s, v in entry["seeds"].items()},
                }
            )
            entry.pop("runs")
        ranked = sorted(
            losses, key=lambda name: losses[name]["mean"][headline] * (1 if lower else -1)
        )
        best = ranked[0]
        seeds = sorted(losses[best]["seeds"])
        differences = {}
        for loss in ranked[1:]:
            differences[loss] = {}
            for m in losses[best]["mean"]:
                if m in losses[loss]["mean"]:
                    differences[loss][m] = paired_difference(
                        [losses[loss]["seeds"][s][m] for s in seeds],
                        [losses[best]["seeds"][s][m] for s in seeds],
                    )
        protocols[protocol] = {
            "headline": headline,
            "lower_is_better": lower,
            "best": best,
            "ranking": ranked,
            "losses": losses,
            "differences": differences,
        }
        tables += _tables(protocol, protocols[protocol])
        figures += draw_figures(out, protocol, ranked, runs, prefix=prefix)
    return {"protocols": protocols, "tables": tables, "figures": figures}


def plan_section(
    out: Path, outcomes: list[RunOutcome], tuned: dict | None, prefix: str, title: str
) -> dict:
    """:func:`analyse` of the seen-class runs of one plan of an experiment (``prefix``, e.g.
    ``indic-pretrained-``), its tables' titles starting with ``title``; empty when ``tuned``
    lacks one of their searches (a folder tuned before the engine planned it)."""
    losses = {o.spec.group["loss"] for o in outcomes}
    if not outcomes or any(o.spec.group.get("protocol") != "seen" for o in outcomes):
        return {}
    if not tuned or any(f"{prefix}seen-{slug(loss)}" not in tuned for loss in losses):
        return {}
    runs = {o.spec.name: o for o in outcomes}
    result = analyse(out, runs, tuned, {"seen": None}, prefix=prefix)
    return {
        "protocols": {prefix.rstrip("-"): result["protocols"]["seen"]},
        "tables": [{**t, "title": f"{title}: {t['title']}"} for t in result["tables"]],
        "figures": result["figures"],
    }


def _cell(mean: float | None, sd: float | None, metric: str) -> str:
    if mean is None:
        return "n/a"
    percent = "error" in metric or metric in UNSEEN_SCORES
    scale, unit = (100, "%") if percent else (1, "")
    return (
        f"{scale * mean:.2f}{unit}"
        if sd is None
        else f"{scale * mean:.2f} ± {scale * sd:.2f}{unit}"
    )


def _tables(protocol: str, result: dict) -> list[dict]:
    losses, headline = result["losses"], result["headline"]
    metrics = list(dict.fromkeys(m for name in result["ranking"] for m in losses[name]["mean"]))
    scores = [
        {
            "loss": name,
            **{
                m: _cell(losses[name]["mean"].get(m), losses[name]["sd"].get(m), m) for m in metrics
            },
        }
        for name in result["ranking"]
    ]
    diffs = []
    for name, by_metric in result["differences"].items():
        row = {"loss": name}
        for m, d in by_metric.items():
            row[m] = format_difference(d)
        diffs.append(row)
    cost = [
        {
            "loss": name,
            "tuned val error": f"{100 * losses[name]['val_error']:.2f}%",
            "trials (pruned)": f"{losses[name]['trials']} ({losses[name]['pruned']})",
            "tuning s": losses[name]["tuning_seconds"],
            "train s per seed": round(losses[name]["train_seconds"], 1),
            "images/s": round(losses[name]["images_per_second"], 1),
            "passes": ", ".join(str(e) for e in losses[name]["epochs"]),
        }
        for name in result["ranking"]
    ]
    title = {
        "seen": "Seen classes (test split of the training classes)",
        "unseen": "Unseen classes (test classes never trained on)",
    }[protocol]
    tables = [
        {
            "title": f"{title}: mean ± sd over seeds, in %, best first by {headline}",
            "rows": scores,
            "columns": ["loss", *metrics],
        }
    ]
    if diffs:
        tables.append(
            {
                "title": f"{protocol}: paired difference against the best loss "
                f"({result['best']}), points of %, with 95% intervals",
                "rows": diffs,
                "columns": ["loss", *metrics],
            }
        )
    tables.append(
        {"title": f"{protocol}: tuning and training cost", "rows": cost, "columns": list(cost[0])}
    )
    return tables


def write_pages(out: Path, results: dict) -> None:
    """``report.md`` and a self-contained ``report.html`` of the results."""
    settings = results["benchmark"]
    page = Page(f"Benchmark of {len(settings['losses'])} losses on {settings['dataset']}", out)
    page.add(
        "p",
        f"Each loss: {settings['trials']} Optuna trial(s) (seeded TPE, "
        f"{settings['pruner']} pruner) on a validation split, then "
        f"{settings['seeds']} seed(s) at the tuned configuration, trained until the "
        f"validation error stopped improving for {settings['patience']} passes or "
        f"{settings['epochs']} passes, scored on the test split.",
    )
    if results.get("command"):
        page.add("p", f"Command: {results['command']}")
    hw = results.get("hardware") or {}
    page.add(
        "p",
        f"Hardware: {hw.get('cpu')}, {hw.get('cores')} cores, torch "
        f"{hw.get('torch')}; {results['wall_seconds']} s for the invocation that "
        f"trained {results.get('trained')} trial(s) and run(s).",
    )
    for protocol, reason in settings.get("skipped", {}).items():
        page.add("p", f"The {protocol} protocol was skipped: {reason}.")
    for protocol, result in results["protocols"].items():
        page.add(
            "p",
            f"{protocol}: best {result['best']} by {result['headline']}; "
            f"ranking {', '.join(result['ranking'])}.",
        )
    for table in results["tables"]:
        page.add("h2", table["title"])
        page.add("table", table["rows"], table["columns"])
    page.add("h2", "Tuned configurations")
    page.add(
        "pre",
        json.dumps(
            {
                p: {name: loss["tuned"] for name, loss in r["losses"].items()}
                for p, r in results["protocols"].items()
            },
            indent=2,
        ),
    )
    page.add("h2", "Figures")
    for figure in results["figures"]:
        page.add("img", figure["path"], figure["title"])
    (out / "report.html").write_text(render_html(page))
    (out / "report.md").write_text(render_markdown(page, out))
