"""One table over several ``magnetdml benchmark`` folders: each loss's headline score per
folder (mean ± sd over seeds), its rank there and its mean rank, and where Magnet stands
against each folder's best loss (the paired difference with its 95% interval, from the
folder's own ``results.json``). Magnet's own protocol (kNC) gets a row of its own beside its
kNN score, which every loss is ranked by.

    python benchmarks/benchmark_summary.py benchmarks/results/benchmark/omniglot-indic \\
        benchmarks/results/benchmark/omniglot-east-asian \\
        benchmarks/results/benchmark/omniglot-caucasian-cyrillic \\
        --out benchmarks/results/benchmark/finegrained_summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _cell(values: list[float]) -> str:
    mean = 100 * float(np.mean(values))
    sd = 100 * float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f}%"


def summarise(folders: list[Path], protocol: str) -> dict:
    """Rows per loss over ``folders`` (see the module docstring)."""
    columns, rows, against, hardware = [], {}, [], None
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        hardware = hardware or results.get("hardware")
        section = results["protocols"][protocol]
        metric, lower = section["headline"], section["lower_is_better"]
        name = folder.name.removeprefix(f"{results['benchmark']['dataset']}-")
        columns.append(name)
        means = {loss: entry["mean"][metric] for loss, entry in section["losses"].items()}
        order = sorted(means, key=lambda loss: means[loss] if lower else -means[loss])
        for loss, entry in section["losses"].items():
            values = [seed[metric] for seed in entry["seeds"].values()]
            row = rows.setdefault(loss, {"loss": loss, "ranks": []})
            row[name] = _cell(values)
            row["ranks"].append(order.index(loss) + 1)
            if loss == "magnet" and "knc_error" in entry["mean"]:
                own = rows.setdefault("magnet (kNC)", {"loss": "magnet (kNC)", "ranks": None})
                own[name] = _cell([seed["knc_error"] for seed in entry["seeds"].values()])
        best = section["best"]
        difference = section["differences"].get("magnet", {}).get(metric)
        against.append(
            {
                "target": name,
                "metric": metric,
                "best": best,
                "magnet_rank": order.index("magnet") + 1 if "magnet" in order else None,
                "losses": len(order),
                "magnet_minus_best": difference,
                "trials": results["benchmark"]["trials"],
                "seeds": results["benchmark"]["seeds"],
                "wall_seconds": results.get("wall_seconds"),
            }
        )
    for row in rows.values():
        ranks = row.pop("ranks")
        row["mean_rank"] = float(np.mean(ranks)) if ranks else None
    ordered = sorted(rows.values(), key=lambda r: (r["mean_rank"] is None, r["mean_rank"] or 0))
    return {
        "protocol": protocol,
        "columns": columns,
        "rows": ordered,
        "magnet": against,
        "hardware": hardware,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--protocol", default="seen", choices=("seen", "unseen"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / "results.json").is_file()]
    if missing:
        raise SystemExit(f"no results.json in {', '.join(missing)}: run the benchmark first")
    summary = summarise(args.folders, args.protocol)
    summary["command"] = "python benchmarks/benchmark_summary.py " + " ".join(
        [str(f) for f in args.folders]
        + (["--protocol", args.protocol] if args.protocol != "seen" else [])
        + ["--out", str(args.out)]
    )
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    for row in summary["rows"]:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
