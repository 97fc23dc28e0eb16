"""Benchmark ``magnetdml.evaluate`` against pytorch-metric-learning's ``AccuracyCalculator``.

Same synthetic embeddings for both (Gaussian classes of 100 points around random centres, some
overlap so no metric is trivially perfect), 10k and 100k points, 64 and 128 dimensions. Each
(library, config) runs in its own child process, which reports its wall time for the call and
its peak resident memory (``resource.getrusage``: counts faiss/torch/numpy allocations, unlike
tracemalloc), before and after the call, and its CPU time (with one thread, the time on an
idle machine; the shared machine's wall times mostly measure the wait for a core). Ratios are
taken within one run of this script. Both run with ``BENCH_THREADS`` threads (default 1).

Both are run on the metrics they share (precision@1, R-precision, MAP@R, NMI, AMI); ours is
also timed on its full metric set. Agreement is checked on the shared metrics. Needs the
``bench`` extra (``pip install pytorch-metric-learning``). Resumable: finished runs are read
back from the results file and skipped (``--force`` reruns them). ``--quick`` runs a tiny
config only, into a file in the temp folder.

    nice python benchmarks/evaluation_speed.py            # all configs (PML: minutes each)
    python benchmarks/evaluation_speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "evaluation_speed.json"
CONFIGS = [(10_000, 64), (10_000, 128), (100_000, 64), (100_000, 128)]
QUICK_CONFIGS = [(2_000, 32)]
PER_CLASS = 100
# Both libraries run with the same thread count. One thread by default: on a shared 2-core
# machine (load ~8) OpenMP/BLAS thread teams spin on descheduled partners and a 2-thread
# k-means++ seeding ran 20x slower than a 1-thread one, which would measure the load, not the code.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SHARED = {"precision_at_1": "precision_at_1", "r_precision": "r_precision",
          "map_at_r": "mean_average_precision_at_r", "nmi": "NMI", "ami": "AMI"}
NOTES = {
    "precision_at_1/r_precision/map_at_r": (
        "Same definitions (Musgrave et al. 2020; lone queries excluded; R = class size - 1, "
        "below our max_r=1024 cap, equal to PML's default k='max_bin_count'); both use exact "
        "faiss IndexFlatL2 search, so they agree to float rounding. faiss computes distances "
        "with sgemm blocks whose shape depends on the query batch (we search 4096 queries at "
        "a time, PML all at once): two nearly tied neighbours can swap, moving MAP@R ~1e-9."),
    "nmi/ami": (
        "Same formulas (scikit-learn), different k-means: PML runs faiss.Kmeans with random "
        "initialisation, 25 iterations and faiss's default subsampling to 256 points per "
        "centroid; we seed with k-means++ and use every point (DESIGN.md §4). Differences "
        "reflect the clustering, not the metric."),
}


def make_data(n: int, dim: int, seed: int = 0):
    """``(n, dim)`` float32 embeddings in ``n / PER_CLASS`` overlapping Gaussian classes."""
    rng = np.random.default_rng(seed)
    classes = n // PER_CLASS
    labels = np.repeat(np.arange(classes), PER_CLASS)
    centres = rng.normal(size=(classes, dim))
    spread = rng.uniform(0.9, 1.6, size=classes)[labels, None]      # per-class noise scale
    x = centres[labels] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0    # Linux: KiB


def _cpu_seconds() -> float:
    # With one thread, CPU time is the wall time the call would take on an idle machine; on
    # the shared machine wall time mostly measures how long we waited for a core.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(library: str, n: int, dim: int) -> dict:
    """Run one library on one config in this (fresh) process; return its measurements."""
    if library == "pml":
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    else:
        from magnetdml.evaluation import evaluate
    x, y = make_data(n, dim)
    before = _peak_rss_mb()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    if library == "pml":
        calculator = AccuracyCalculator(include=tuple(SHARED.values()), k="max_bin_count",
                                        device=torch.device("cpu"))
        raw = calculator.get_accuracy(x, y)
        metrics = {ours: float(raw[theirs]) for ours, theirs in SHARED.items()}
    else:
        names = list(SHARED) if library == "ours" else None
        metrics = evaluate(x, y, metrics=names, seed=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu,
            "rss_before_mb": before, "peak_rss_mb": _peak_rss_mb(),
            "metrics": metrics}


def run_child(library: str, n: int, dim: int) -> dict:
    command = [sys.executable, __file__, "--child", library, str(n), str(dim)]
    env = dict(os.environ, **{name: str(THREADS) for name in THREAD_VARIABLES})
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{library} {n}x{dim} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: dict) -> dict:
    ours, pml, full = runs.get("ours"), runs.get("pml"), runs.get("ours_all_metrics")
    if not (ours and pml):
        return {}
    extra = {k: r["peak_rss_mb"] - r["rss_before_mb"] for k, r in (("o", ours), ("p", pml))}
    out = {"speedup_pml_over_ours": pml["seconds"] / ours["seconds"],
           "peak_rss_ratio_pml_over_ours": pml["peak_rss_mb"] / ours["peak_rss_mb"],
           "eval_extra_rss_ratio_pml_over_ours": extra["p"] / max(extra["o"], 1.0),
           "abs_diff": {m: abs(ours["metrics"][m] - pml["metrics"][m]) for m in SHARED}}
    if "cpu_seconds" in ours and "cpu_seconds" in pml:
        out["cpu_speedup_pml_over_ours"] = pml["cpu_seconds"] / ours["cpu_seconds"]
    if full:
        out["ours_all_metrics_seconds"] = full["seconds"]
        out["ours_all_metrics_cpu_seconds"] = full.get("cpu_seconds")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny config, separate file")
    parser.add_argument("--force", action="store_true", help="rerun finished configs")
    parser.add_argument("--child", nargs=3, metavar=("LIB", "N", "DIM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    # Quick runs are a smoke test: kept out of the committed results file.
    path = Path(tempfile.gettempdir()) / "evaluation_speed_quick.json" if args.quick else RESULTS
    results = json.loads(path.read_text()) if path.exists() and not args.force else {}
    results.update({"machine": f"{platform.machine()}, {platform.python_version()}, "
                               f"{os.cpu_count()} cpus", "threads": THREADS, "notes": NOTES})
    configs = results.setdefault("configs", {})
    for n, dim in QUICK_CONFIGS if args.quick else CONFIGS:
        key = f"{n}x{dim}"
        runs = configs.setdefault(key, {"n": n, "dim": dim, "classes": n // PER_CLASS})
        for library in ("ours", "pml", "ours_all_metrics"):
            if library in runs:
                continue
            print(f"{key} {library} ...", flush=True)
            runs[library] = run_child(library, n, dim)
            runs["summary"] = summarise(runs)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")        # resumable
            print(f"  {runs[library]['seconds']:.2f} s, peak RSS "
                  f"{runs[library]['peak_rss_mb']:.0f} MB", flush=True)
    print(json.dumps({k: v.get("summary") for k, v in configs.items()}, indent=2))


if __name__ == "__main__":
    main()
