"""Convergence at the tuned configurations (paper §4.1, Fig. 5), on coarse data.

The ``convergence`` experiment compares softmax, triplet and Magnet under one hand-set
configuration. This reads instead the finished runs of ``experiment classification-tuned``
(every loss at its own tuned configuration, 3 seeds, the test error recorded after every real
pass over the training data) and applies the same analysis
(:meth:`magnetdml.experiments.convergence.Convergence.analyse`): each loss's own-protocol test
error (kNC for Magnet, soft kNN otherwise) per pass, averaged over seeds; triplet's asymptotic
error (the mean of its last 3 passes); the first pass at which each loss reaches it, and the
speed-up ``pass(triplet) / pass(loss)``. Nothing is trained.

    python benchmarks/tuned_convergence.py    # -> benchmarks/results/experiments/convergence-tuned
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "experiments"
RUN = re.compile(r"^(?P<dataset>[a-z0-9-]+)-(?P<loss>softmax|triplet|magnet)-s(?P<seed>\d+)$")


def load_runs(folder: Path, datasets: tuple[str, ...]) -> dict:
    """The finished runs of a ``classification-tuned`` folder, as the runner's outcomes."""
    from magnetdml.experiments.run_stage import RunOutcome, RunSpec
    from magnetdml.training.run_dir import RunDir

    runs = {}
    for run_dir in sorted(folder.iterdir()):
        match = RUN.match(run_dir.name)
        if not match or match["dataset"] not in datasets:
            continue
        if not (run_dir / "metrics.json").is_file():
            continue
        group = {"dataset": match["dataset"], "loss": match["loss"], "seed": int(match["seed"])}
        history = RunDir(run_dir).read_history()
        summary = json.loads((run_dir / "metrics.json").read_text())
        runs[run_dir.name] = RunOutcome(RunSpec(run_dir.name, {}, group), run_dir, summary, history)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=RESULTS / "classification-tuned")
    parser.add_argument("--datasets", default="fashion-mnist,cifar10")
    parser.add_argument("--out", type=Path, default=RESULTS / "convergence-tuned")
    args = parser.parse_args(argv)
    from magnetdml.experiments.convergence import Convergence

    runs = load_runs(args.runs, tuple(args.datasets.split(",")))
    if not runs:
        raise SystemExit(f"no finished classification-tuned runs in {args.runs}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = Convergence().analyse(args.out, runs)
    source = json.loads((args.runs / "results.json").read_text())
    results.update(
        {
            "command": "python benchmarks/tuned_convergence.py"
            + ("" if args.datasets == "fashion-mnist,cifar10" else f" --datasets {args.datasets}"),
            "runs_from": {"command": source.get("command"), "hardware": source.get("hardware")},
            "hardware": source.get("hardware"),
        }
    )
    for row in results["tables"][0]["rows"]:  # passes, not iterations: one record per pass
        row["pass_reached"] = _pass_of(runs, row["dataset"], row["iteration_reached"])
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for claim in results["claims"]:
        print(f"{claim['claim']}: {claim['holds']} ({claim['detail']})")
    return 0


def _pass_of(runs: dict, dataset: str, iteration: int | None) -> int | None:
    """The pass (epoch) whose evaluation was at ``iteration`` in the dataset's runs."""
    if iteration is None:
        return None
    for outcome in runs.values():
        if outcome.spec.group["dataset"] == dataset:
            for record in outcome.history:
                if record.get("iteration") == iteration:
                    return int(record["epoch"])
    return None


if __name__ == "__main__":
    raise SystemExit(main())
