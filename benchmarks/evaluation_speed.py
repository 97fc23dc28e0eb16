"""Benchmark ``magnetdml.evaluate`` against pytorch-metric-learning's ``AccuracyCalculator``.

Configs (same synthetic embeddings for both libraries; Gaussian classes around random centres
with some overlap, so no metric is trivially perfect):

- ``10000x64`` .. ``100000x128``: classes of 100 points, every point a query against all the
  others (leave-one-out); the five metrics both define (precision@1, R-precision, MAP@R, NMI,
  AMI);
- ``1000000x128``: a reference of one million points in 1000 classes of 1000
  (``evaluation_million.make_data``) and ``--queries`` held-out queries (2000 by default; the
  search is linear in the queries), retrieval metrics only (R = 1000).

Timing: one child process per config loads both libraries and calls them alternately,
``--repeats`` rounds (the order swapped every round), so both see the same machine load; the
summary gives each library's min and median and the PML/ours ratio of the medians, plus the
spread of the per-round ratios. Memory: one more child per library and config runs a single
call and reports its peak resident memory (``resource.getrusage``: counts faiss/torch/numpy
allocations, unlike tracemalloc) before and after. Both libraries run with ``BENCH_THREADS``
threads (default 1). Agreement is checked on the shared metrics. Needs the ``bench`` extra
(``pip install pytorch-metric-learning``). Resumable: finished configs are read back from the
results file and skipped (``--force`` reruns them; with ``--configs``, only those, the
others' entries kept). Each config records its command and the load average around it.
``--quick`` runs tiny configs into a file in the temp folder.

    python benchmarks/evaluation_speed.py --repeats 3
    python benchmarks/evaluation_speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "evaluation_speed.json"
# name -> (reference points, dim, held-out queries or None for leave-one-out)
CONFIGS = {
    "10000x64": (10_000, 64, None),
    "10000x128": (10_000, 128, None),
    "100000x64": (100_000, 64, None),
    "100000x128": (100_000, 128, None),
    "1000000x128": (1_000_000, 128, 2_000),
}
QUICK_CONFIGS = {"2000x32": (2_000, 32, None), "20000x32": (20_000, 32, 500)}
PER_CLASS = 100
# Both libraries run with the same thread count. One thread by default: on a shared 2-core
# machine (load ~8) OpenMP/BLAS thread teams spin on descheduled partners and a 2-thread
# k-means++ seeding ran 20x slower than a 1-thread one, which would measure the load, not the code.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SHARED = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
    "nmi": "NMI",
    "ami": "AMI",
}
RETRIEVAL = ("precision_at_1", "r_precision", "map_at_r")
NOTES = {
    "precision_at_1/r_precision/map_at_r": (
        "Same definitions (Musgrave et al. 2020; lone queries excluded; R = class size (- 1 "
        "when the query is in the reference), below our max_r cap, equal to PML's default "
        "k='max_bin_count'); both use exact faiss IndexFlatL2 search, so they agree to float "
        "rounding. faiss computes distances with sgemm blocks whose shape depends on the query "
        "batch (we search in equal chunks of at most 4096 queries, PML all at once): two "
        "nearly tied neighbours can swap, moving MAP@R ~1e-9."
    ),
    "nmi/ami": (
        "Same formulas (scikit-learn), different k-means: PML runs faiss.Kmeans with random "
        "initialisation, 25 iterations and faiss's default subsampling to 256 points per "
        "centroid; we seed with greedy k-means++ (on at most 64 points per centre) and run "
        "the Lloyd steps on every point. Differences "
        "reflect the clustering, not the metric."
    ),
}


def make_data(n: int, dim: int, seed: int = 0):
    """``(n, dim)`` float32 embeddings in ``n / PER_CLASS`` overlapping Gaussian classes."""
    rng = np.random.default_rng(seed)
    classes = n // PER_CLASS
    labels = np.repeat(np.arange(classes), PER_CLASS)
    centres = rng.normal(size=(classes, dim))
    spread = rng.uniform(0.9, 1.6, size=classes)[labels, None]  # per-class noise scale
    x = centres[labels] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def config_data(n: int, dim: int, queries: int | None):
    """``(queries, labels, reference, reference_labels)``; the reference is None when the
    queries are their own reference."""
    if queries is None:
        x, y = make_data(n, dim)
        return x, y, None, None
    sys.path.insert(0, str(Path(__file__).parent))
    from evaluation_million import make_data as million_data  # 1000-point classes, chunked

    classes = max(n // 1000, 2)
    ref, ref_y = million_data(n, seed=0, classes=classes)
    x, y = million_data(queries, seed=7, classes=classes)
    return x, y, ref, ref_y


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _callers(n: int, dim: int, queries: int | None):
    """``{library: () -> metrics}`` over this config's data, both libraries imported."""
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    from magnetdml.evaluation import evaluate

    torch.set_num_threads(THREADS)
    x, y, ref, ref_y = config_data(n, dim, queries)
    shared = list(RETRIEVAL) if queries else list(SHARED)
    calculator = AccuracyCalculator(
        include=tuple(SHARED[m] for m in shared), k="max_bin_count", device=torch.device("cpu")
    )

    def pml():
        raw = (
            calculator.get_accuracy(x, y)
            if ref is None
            else calculator.get_accuracy(x, y, ref, ref_y, ref_includes_query=False)
        )
        return {ours: float(raw[SHARED[ours]]) for ours in shared}

    def ours(names=shared):
        return evaluate(x, y, ref, ref_y, metrics=names, seed=0)

    return {"ours": ours, "pml": pml, "ours_all_metrics": lambda: ours(None)}


def timed(call) -> dict:
    cpu, start = _cpu_seconds(), time.perf_counter()
    metrics = call()
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": _cpu_seconds() - cpu,
        "metrics": metrics,
    }


def child_time(
    n: int, dim: int, queries: int | None, repeats: int, all_metrics: bool = True
) -> dict:
    """Both libraries in this process, alternately, ``repeats`` rounds."""
    calls = _callers(n, dim, queries)
    runs: dict[str, list] = {"ours": [], "pml": []}
    for round_ in range(repeats):
        for library in ("ours", "pml") if round_ % 2 == 0 else ("pml", "ours"):
            runs[library].append(timed(calls[library]))
            print(
                f"  round {round_}: {library} {runs[library][-1]['seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    out = {
        lib: {
            "seconds": [r["seconds"] for r in rs],
            "cpu_seconds": [r["cpu_seconds"] for r in rs],
            "metrics": rs[0]["metrics"],
        }
        for lib, rs in runs.items()
    }
    if all_metrics:
        out["ours_all_metrics"] = timed(calls["ours_all_metrics"])
    return out


def child_memory(library: str, n: int, dim: int, queries: int | None) -> dict:
    """One call of one library in this fresh process: peak resident memory."""
    calls = _callers(n, dim, queries)
    before = _peak_rss_mb()
    result = timed(calls[library])
    return {
        "rss_before_mb": before,
        "peak_rss_mb": _peak_rss_mb(),
        "extra_rss_mb": _peak_rss_mb() - before,
        "seconds": result["seconds"],
    }


def run_child(*args) -> dict:
    command = [sys.executable, __file__, "--child", *map(str, args)]
    env = dict(os.environ, **{name: str(THREADS) for name in THREAD_VARIABLES})
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(entry: dict) -> dict:
    timing, memory = entry.get("timing"), entry.get("memory", {})
    if not timing:
        return {}
    ours, pml = timing["ours"], timing["pml"]
    rounds = [p / o for p, o in zip(pml["seconds"], ours["seconds"], strict=True)]
    out = {
        "ours_seconds_min_median": [min(ours["seconds"]), statistics.median(ours["seconds"])],
        "pml_seconds_min_median": [min(pml["seconds"]), statistics.median(pml["seconds"])],
        "speedup_pml_over_ours_median": (
            statistics.median(pml["seconds"]) / statistics.median(ours["seconds"])
        ),
        "speedup_pml_over_ours_min": min(pml["seconds"]) / min(ours["seconds"]),
        "speedup_per_round_min_median_max": [min(rounds), statistics.median(rounds), max(rounds)],
        "cpu_speedup_pml_over_ours_median": (
            statistics.median(pml["cpu_seconds"]) / statistics.median(ours["cpu_seconds"])
        ),
        "abs_diff": {m: abs(ours["metrics"][m] - pml["metrics"][m]) for m in ours["metrics"]},
        "ours_all_metrics_seconds": timing.get("ours_all_metrics", {}).get("seconds"),
    }
    if "ours" in memory and "pml" in memory:
        out["peak_rss_mb_ours_pml"] = [memory["ours"]["peak_rss_mb"], memory["pml"]["peak_rss_mb"]]
        out["extra_rss_mb_ours_pml"] = [
            memory["ours"]["extra_rss_mb"],
            memory["pml"]["extra_rss_mb"],
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny configs, separate file")
    parser.add_argument("--force", action="store_true", help="rerun finished configs")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds per config")
    parser.add_argument(
        "--queries", type=int, default=2_000, help="held-out queries of the 1M-reference config"
    )
    parser.add_argument("--configs", nargs="*", help="names of the configs to run (default all)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="no memory runs and no all-metrics run (for a loaded machine)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "time":
            n, dim, queries, repeats, all_metrics = map(int, rest)
            print(json.dumps(child_time(n, dim, queries or None, repeats, bool(all_metrics))))
        else:
            library, n, dim, queries = rest[0], *map(int, rest[1:])
            print(json.dumps(child_memory(library, n, dim, queries or None)))
        return
    configs_run = dict(QUICK_CONFIGS if args.quick else CONFIGS)
    if not args.quick and "1000000x128" in configs_run:
        configs_run["1000000x128"] = (1_000_000, 128, args.queries)
    if args.configs:
        configs_run = {k: v for k, v in configs_run.items() if k in args.configs}
    # Quick runs are a smoke test: kept out of the committed results file.
    path = (
        Path(tempfile.gettempdir()) / "evaluation_speed_quick.json" if args.quick else args.results
    )
    # --force reruns the chosen configs and keeps the others' finished entries
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.force and not args.configs:
        results = {}
    results.update(
        {
            "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} cpus",
            "threads": THREADS,
            "notes": NOTES,
            "command": "python benchmarks/evaluation_speed.py " + " ".join(sys.argv[1:]),
        }
    )
    configs = results.setdefault("configs", {})
    for key, (n, dim, queries) in configs_run.items():
        entry = configs.get(key, {})
        if entry.get("summary") and not args.force:
            continue
        entry = {
            "reference": n,
            "dim": dim,
            "queries": queries or n,
            "leave_one_out": queries is None,
            "repeats": args.repeats,
            "command": "python benchmarks/evaluation_speed.py " + " ".join(sys.argv[1:]),
            "load_average_at_start": list(os.getloadavg()),
        }
        configs[key] = entry
        print(f"{key}: timing, {args.repeats} rounds ...", flush=True)
        entry["timing"] = run_child(
            "time", n, dim, queries or 0, args.repeats, int(not args.timing_only)
        )
        entry["memory"] = {}
        for library in () if args.timing_only else ("ours", "pml"):
            print(f"{key}: memory, {library} ...", flush=True)
            entry["memory"][library] = run_child("memory", library, n, dim, queries or 0)
        entry["load_average_at_end"] = list(os.getloadavg())
        entry["summary"] = summarise(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")  # resumable
        print(json.dumps(entry["summary"], indent=2), flush=True)


if __name__ == "__main__":
    main()
