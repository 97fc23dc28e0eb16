"""The training runs quoted in the README's Results section, each a `magnetdml train` command.

Writes benchmarks/results/train_runs.json: for each named run, the exact command, the final
summary (kNC / kNN test errors, time, images/s), and the machine it ran on. Resumable: runs
already in the results file are skipped (delete an entry to rerun it).

    python benchmarks/train_runs.py [--only NAME ...] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "train_runs.json"

RUNS = {
    # The Quickstart's default job: Magnet Loss on scikit-learn's digits, MLP.
    "digits-magnet-default": [],
    # Issue "Magnet Loss end to end": Fashion-MNIST, small CNN, a few epochs.
    "fashion-mnist-magnet-small-cnn": [
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        "{data}/fashion-mnist",
        "--model.backbone",
        "small-cnn",
        "--epochs",
        "3",
    ],
}


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": int(os.environ.get("THREADS", "1")),
        "python": platform.python_version(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS))
    parser.add_argument(
        "--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-dir", default="runs/benchmarks")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.only or RUNS:
        if name in results:
            print(f"{name}: already in {RESULTS}, skipped")
            continue
        flags = [f.format(data=args.data_root) for f in RUNS[name]]
        out = Path(args.runs_dir) / name
        command = [
            "magnetdml",
            "train",
            *flags,
            "--train.threads",
            str(args.threads),
            "--out",
            str(out),
            "--quiet",
        ]
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "magnetdml", *command[1:]], check=True)
        summary = json.loads((out / "metrics.json").read_text())
        results[name] = {
            "command": shlex.join(command),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "summary": summary,
            "machine": {**machine(), "threads": args.threads},
            "date": time.strftime("%Y-%m-%d"),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: kNC {summary['knc_error']:.4f}  kNN {summary['knn_error']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
