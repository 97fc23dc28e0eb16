"""Do neighbours share what training never saw? (paper §4.2, Fig. 6d) -- in the fine-grained
regime, over the tuned runs of ``magnetdml benchmark``.

For every finished seed run of every loss in the given benchmark folders (e.g. the three
fine-grained Omniglot targets of ``benchmarks/benchmark_runs.sh finegrained``, each a group of
four alphabets), the run's model embeds its test drawings; then, for each test drawing, the
fraction of its ``k`` nearest neighbours *of other characters* that share its alphabet
(:func:`magnetdml.experiments.analysis.attribute_concentration` with ``exclude_same_class``;
``k`` = 1 ... 128), averaged over the drawings. The chance level is that fraction for a random
embedding (:func:`~magnetdml.experiments.analysis.chance_concentration`). A run's curve is
cached in its folder (``attributes.json``, keyed by its ``metrics.json``), so a rerun needs no
model.

Per benchmark folder and loss: mean ± sd over the seeds at each ``k``; per loss over all
folders and seeds: the paired difference to Magnet (same folder and seed) with its 95%
interval, at each ``k``. Results: ``--out`` (default
``benchmarks/results/benchmark/attributes.json``).

    python benchmarks/attribute_concentration.py benchmarks/results/benchmark/omniglot-indic \\
        benchmarks/results/benchmark/omniglot-east-asian \\
        benchmarks/results/benchmark/omniglot-caucasian-cyrillic
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "benchmark" / "attributes.json"
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
RUN = re.compile(r"^seen-(?P<loss>.+)-s(?P<seed>\d+)$")


def runs_of(folder: Path) -> list[tuple[str, int, Path]]:
    """``(loss, seed, run folder)`` of every finished seen-protocol seed run in ``folder``."""
    found = []
    for run_dir in sorted(folder.iterdir()):
        match = RUN.match(run_dir.name)
        if match and (run_dir / "metrics.json").is_file():
            loss = json.loads((run_dir / "config.json").read_text())["loss"]["name"]
            found.append((loss, int(match["seed"]), run_dir))
    return found


def measure(run_dir: Path, attribute: str) -> dict:
    """The run's other-class concentration curve ``{k: fraction}`` and chance level (cached)."""
    from magnetdml.experiments.attributes import measure_run
    from magnetdml.experiments.hierarchy import cached_measurement
    from magnetdml.experiments.run_stage import RunOutcome, RunSpec

    summary = json.loads((run_dir / "metrics.json").read_text())
    outcome = RunOutcome(RunSpec(run_dir.name, {}), run_dir, summary, [])
    values = cached_measurement(outcome, "attributes.json", lambda: measure_run(run_dir, attribute))
    return {"curve": values["other"], "chance": values["chance_other"]}


def summarise(measured: dict) -> dict:
    """Rows per (folder, loss) and per loss, and paired differences to Magnet."""
    from magnetdml.experiments.benchmark_report import paired_difference

    rows, by_loss = [], {}
    for (folder, loss), seeds in sorted(measured.items()):
        row = {"target": folder, "loss": loss, "seeds": len(seeds)}
        for k in SIZES:
            values = [s["curve"][str(k)] for s in seeds.values() if str(k) in s["curve"]]
            if values:
                row[f"k{k}"] = float(np.mean(values))
                row[f"k{k}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        row["chance"] = float(np.mean([s["chance"] for s in seeds.values()]))
        rows.append(row)
        for seed, s in seeds.items():
            by_loss.setdefault(loss, {})[(folder, seed)] = s
    overall = []
    magnet = by_loss.get("magnet", {})
    for loss, pairs in sorted(by_loss.items()):
        row = {"loss": loss, "runs": len(pairs)}
        for k in SIZES:
            keys = [key for key, s in pairs.items() if str(k) in s["curve"]]
            if not keys:  # k above the test split's other-class neighbours
                continue
            row[f"k{k}"] = float(np.mean([pairs[key]["curve"][str(k)] for key in keys]))
            shared = [key for key in keys if key in magnet and str(k) in magnet[key]["curve"]]
            if loss != "magnet" and shared:
                row[f"k{k}_vs_magnet"] = paired_difference(
                    [pairs[key]["curve"][str(k)] for key in shared],
                    [magnet[key]["curve"][str(k)] for key in shared],
                )
        row["chance"] = float(np.mean([s["chance"] for s in pairs.values()]))
        overall.append(row)
    overall.sort(key=lambda r: -r.get("k4", 0.0))
    return {"rows": rows, "overall": overall}


def _hardware(folders: list[Path]) -> str | None:
    """The machine that trained the runs (the models decide the numbers): the first
    benchmark folder's ``results.json`` says."""
    for folder in folders:
        path = folder / "results.json"
        if path.is_file():
            return json.loads(path.read_text()).get("hardware")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="magnetdml benchmark folders")
    parser.add_argument("--attribute", default="alphabet", help="a class attribute of the data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    measured: dict = {}
    for folder in args.folders:
        found = runs_of(folder)
        if not found:
            print(f"no finished seen-protocol runs in {folder}", file=sys.stderr)
            return 2
        for loss, seed, run_dir in found:
            key = (folder.name, loss)
            measured.setdefault(key, {})[seed] = measure(run_dir, args.attribute)
            print(f"{folder.name} {loss} s{seed}: k=4 {measured[key][seed]['curve'].get('4')}")
    from magnetdml._paths import portable_command

    results = {
        "command": portable_command(["python", "benchmarks/attribute_concentration.py"])
        + " "
        + " ".join(str(f) for f in args.folders),
        "attribute": args.attribute,
        "sizes": list(SIZES),
        "scope": "neighbours of other classes only; fraction sharing the example's attribute",
        "hardware": _hardware(args.folders),
        **summarise(measured),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
