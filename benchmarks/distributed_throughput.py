"""Training throughput of 1 against 2 processes (torchrun, gloo on CPU, one thread each).

The same Magnet job (Fashion-MNIST 10% subset, ``small-cnn``, M = 12 x D = 4 per rank, K = 4,
refresh every epoch) runs once as one process and once as ``torchrun --nproc-per-node 2``.
Each rank trains on its own neighbourhood, so two processes process twice the images per
step; the index refresh and evaluation passes are sharded across the ranks. Throughput is
images / (training seconds incl. every refresh), read from each run's ``metrics.json``.

CAVEAT: this machine has 2 CPU cores shared with other jobs, so 2 processes can at best
double the throughput and in practice compete with the load; the numbers show that the
distributed path works and what the communication costs, not how it scales on real hardware.
Results: ``benchmarks/results/distributed_throughput.json`` (configs already there skipped).

    nice python benchmarks/distributed_throughput.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from magnetdml._paths import portable_command, portable_path

RESULTS = Path(__file__).parent / "results" / "distributed_throughput.json"
FLAGS = [
    "--dataset",
    "fashion-mnist",
    "--data.val_fraction",
    "0.9",
    "--model.backbone",
    "small-cnn",
    "--model.embedding_dim",
    "64",
    "--train.threads",
    "1",
    "--train.lr",
    "0.01",
    "--eval.every",
    "0",
    "--eval.plots",
    "false",
    "--index.clusters_per_class",
    "4",
    "--quiet",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes: int, data_dir: str, epochs: int, out: Path) -> dict:
    launcher = (
        [sys.executable, "-m", "magnetdml"]
        if processes == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(processes),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            "-m",
            "magnetdml",
        ]
    )
    command = [
        *launcher,
        "train",
        *FLAGS,
        "--data-dir",
        data_dir,
        "--epochs",
        str(epochs),
        "--out",
        str(out / f"p{processes}"),
    ]
    started = time.perf_counter()
    subprocess.run(
        command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    summary = json.loads((out / f"p{processes}" / "metrics.json").read_text())
    seconds = summary["train_seconds"] + summary["initial_index_seconds"]
    # the temporary folder as $TMPDIR and the data folder relative: no path of this machine
    recorded = portable_command(command[1:]).replace(portable_path(out), "$TMPDIR")
    return {
        "processes": processes,
        "command": recorded,
        "images": summary["images"],
        "iterations": summary["iterations"],
        "train_seconds": round(seconds, 2),
        "images_per_second": round(summary["images"] / seconds, 1),
        "refreshes": summary["refreshes"],
        "wall_seconds_incl_startup_eval": round(wall, 1),
        "knc_error": summary["knc_error"],
        "knn_error": summary["knn_error"],
        "ran_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results.setdefault("runs", {})
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads_per_process": 1,
        "backend": "gloo",
        "note": "2 cores shared with parallel jobs: not a scaling study",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for processes in (1, 2):
            key = str(processes)
            if key in results["runs"]:
                continue
            results["runs"][key] = run(processes, args.data_dir, args.epochs, Path(tmp))
            print(json.dumps(results["runs"][key]))
            args.results.write_text(json.dumps(results, indent=2) + "\n")
    runs = results["runs"]
    if {"1", "2"} <= runs.keys():
        results["speedup_2_over_1"] = round(
            runs["2"]["images_per_second"] / runs["1"]["images_per_second"], 3
        )
        print("speedup 2 processes / 1:", results["speedup_2_over_1"])
    args.results.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
