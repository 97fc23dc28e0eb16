"""Cost of a cluster-index refresh (clustering only, no forward pass) against N and classes.

For synthetic 128-d embeddings (N = 10k, 100k, 1M; 100, 1k, 10k classes; K = 8) it measures
the wall time and peak memory of ``ClusterIndex.fit`` (k-means++ seeding) and of a warm-started
``refresh``, the mean cost of one ``NeighbourhoodSampler`` step (M = 12, D = 4; the impostor
cache starts cold), and the refresh cost in sampler steps. Each config runs in its own process
so peak memory is its own. Results go to benchmarks/results/refresh_cost.json; configs already
there are skipped, so an interrupted run resumes.

    nice python benchmarks/refresh_cost.py            # all 9 configs
    python benchmarks/refresh_cost.py --quick         # N = 10k only, into refresh_cost_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SIZES = (10_000, 100_000, 1_000_000)
CLASSES = (100, 1_000, 10_000)
DIM, K, M, D, STEPS = 128, 8, 12, 4, 200


def synthetic(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes of 4 Gaussian modes each, built in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    modes = (3 * rng.standard_normal((n_classes * 4, DIM))).astype(np.float32)
    labels = rng.permutation(np.arange(n) % n_classes)
    x = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, 100_000):
        y = labels[lo : lo + 100_000]
        mode = y * 4 + rng.integers(0, 4, y.size)
        x[lo : lo + y.size] = modes[mode] + rng.standard_normal((y.size, DIM), dtype=np.float32)
    return x, labels


def _reset_peak() -> None:
    try:  # Linux: writing 5 resets VmHWM, the peak resident set
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_mib(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n: int, n_classes: int) -> dict:
    from magnetdml.clustering import ClusterIndex
    from magnetdml.sampling import NeighbourhoodSampler

    x, y = synthetic(n, n_classes)
    base = _rss_mib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    index = ClusterIndex(clusters_per_class=K, seed=0).fit(x, y)
    fit_s = time.perf_counter() - start
    fit_peak = _rss_mib("VmHWM") - base
    x += 0.05 * np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)
    _reset_peak()
    start = time.perf_counter()
    index.refresh(x, y)
    refresh_s = time.perf_counter() - start
    refresh_peak = _rss_mib("VmHWM") - base
    sampler = NeighbourhoodSampler(index, clusters_per_batch=M, examples_per_cluster=D, seed=0)
    start = time.perf_counter()
    for _ in range(STEPS):
        batch = sampler.next_batch()
        sampler.update_losses(batch, np.ones(len(batch)))
    step_s = (time.perf_counter() - start) / STEPS
    return {
        "n": n,
        "classes": n_classes,
        "dim": DIM,
        "clusters_per_class": K,
        "n_clusters": int(index.n_clusters_),
        "fit_s": round(fit_s, 3),
        "refresh_warm_s": round(refresh_s, 3),
        "fit_peak_mib": round(fit_peak, 1),
        "refresh_peak_mib": round(refresh_peak, 1),
        "embeddings_mib": round(x.nbytes / 2**20, 1),
        "sampler_step_ms": round(1000 * step_s, 3),
        "refresh_in_sampler_steps": round(refresh_s / step_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10k only (a smoke run)")
    parser.add_argument("--max-n", type=int, default=max(SIZES), help="skip larger N")
    parser.add_argument(
        "--one", nargs=2, type=int, metavar=("N", "CLASSES"), help=argparse.SUPPRESS
    )  # internal: one config in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    out = RESULTS / ("refresh_cost_quick.json" if args.quick else "refresh_cost.json")
    report = json.loads(out.read_text()) if out.exists() else {"results": []}
    report["machine"] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    done = {(r["n"], r["classes"]) for r in report["results"]}
    sizes = SIZES[:1] if args.quick else [s for s in SIZES if s <= args.max_n]
    for n in sizes:
        for n_classes in CLASSES:
            if (n, n_classes) in done:
                print(f"skip N={n} classes={n_classes} (already in {out.name})")
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--one", str(n), str(n_classes)],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(row, flush=True)
            report["results"].append(row)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")  # after each: resumable


if __name__ == "__main__":
    main()
