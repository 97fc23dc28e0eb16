"""What Magnet Loss's machinery costs in training time, against softmax on the same network.

End-to-end training throughput (images/s) through ``magnetdml.training.train``: every step's
sampling, forward, loss, backward and update, *and* every cluster-index refresh (the initial
fit included), for

- ``softmax``: the same backbone and batch size (48 = 6 classes x 8; Fashion-MNIST has only 10
  classes), no index;
- ``magnet-fixed``: M = 12 clusters x D = 4, K = 4 clusters per class, refreshed after every
  epoch (paper §3.2), synchronously: training waits for the refresh, whose eval pass shares
  its batches among threads on the cores one-thread training leaves idle
  (``training.embed.cpu_workers``);
- ``magnet-fixed-refresh-1-thread``: the same with the refresh pass on the training thread
  alone (how it ran before), so the table shows the refresh's cost both ways;
- ``magnet-fixed-bfloat16``: ``magnet-fixed`` with the refreshes during training embedding in
  bfloat16 (``--index.refresh_precision bfloat16``; what that moves:
  ``refresh_precision.py``);
- ``magnet-adaptive-<d>``: the same, refreshed when a probe set drifts by more than ``d``
  (``--index.drift_threshold d``; checked every 50 iterations on 128 probe images);
- ``magnet-background-<lag>``: the every-epoch refresh computed from a weight snapshot on a
  second thread (so on the second core) and swapped in ``lag`` iterations later;
- ``softmax-2-threads`` / ``magnet-fixed-2-threads``: both with two torch threads, the
  same-hardware comparison for the background refresh, which uses the core that one-thread
  softmax leaves idle.

The final kNC / kNN test errors are recorded beside the speed, so speed is not bought with
accuracy. Fashion-MNIST, ``small-cnn``, embedding 64, one torch thread. To finish in ~10
minutes on a loaded 2-core machine it trains on a 10% class-stratified subset of the training
set (``data.val_fraction 0.9`` holds the rest out): the ratio does not depend on N, since a
refresh embeds every training image once per epoch of training on them. Test set: all 10k.

Each run also records ``refresh_fraction_of_epoch``: the mean time of one refresh over the
time of one epoch's steps (``train_seconds`` less the refreshes inside it, per epoch). The mean
runs over every refresh, the final one included, which with ``magnet-fixed-bfloat16`` is a
float32 one: its fraction slightly overstates its bfloat16 refreshes.
``--configs`` runs a subset (the README's table: ``softmax magnet-fixed
magnet-fixed-bfloat16 magnet-fixed-refresh-1-thread magnet-background-25
magnet-background-100``). ``summary`` holds one row per config: median images/s, its range,
the ratio to softmax (of the medians, and its range over the rounds), the refresh's fraction
of an epoch and the test errors; rerunning a finished command recomputes it without
training.

``--profile`` runs one extra Magnet epoch under cProfile and records where its time goes.
Every config runs ``--repeats`` times (default 3) in round-robin order and the ratios compare
medians. Results go to ``benchmarks/results/training_overhead.json``; repeats already there
are skipped, so an interrupted run resumes (each entry records when it ran).

    nice python benchmarks/training_overhead.py --data-dir ../shared/data/fashion-mnist
    python benchmarks/training_overhead.py --data-dir ... --quick    # 1 epoch, into /tmp
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "training_overhead.json"
GOAL = 0.9
DRIFTS = (0.5, 1.0)  # probe drift thresholds (scale free, see training/refresh.py)
COMMON = {
    "data.name": "fashion-mnist",
    "data.val_fraction": 0.9,
    "model.backbone": "small-cnn",
    "model.embedding_dim": 64,
    "train.threads": 1,
    "train.epochs": 3,
    "train.seed": 0,
    "train.lr": 0.01,
    "eval.every": 0,
    "eval.plots": False,
    "sampler.clusters_per_batch": 12,
    "sampler.examples_per_cluster": 4,
    "sampler.classes_per_batch": 6,
    "sampler.examples_per_class": 8,
    "index.clusters_per_class": 4,
}
CONFIGS = {
    "softmax": {"loss.name": "softmax"},
    "magnet-fixed": {"loss.name": "magnet"},
    "magnet-fixed-refresh-1-thread": {"loss.name": "magnet"},
    "magnet-fixed-bfloat16": {"loss.name": "magnet", "index.refresh_precision": "bfloat16"},
    **{f"magnet-adaptive-{d}": {"loss.name": "magnet", "index.drift_threshold": d} for d in DRIFTS},
    # the epoch-end refresh embeds a weight snapshot on a second thread and takes
    # effect 25 or 100 iterations (a fifth or four fifths of an epoch here) later
    **{
        f"magnet-background-{lag}": {"loss.name": "magnet", "index.refresh_lag": lag}
        for lag in (25, 100)
    },
    # The background refresh runs on the second core, which one-thread softmax leaves
    # idle; the same-hardware comparison gives both runs two threads.
    "softmax-2-threads": {"loss.name": "softmax", "train.threads": 2},
    "magnet-fixed-2-threads": {"loss.name": "magnet", "train.threads": 2},
}
# Configs whose refresh pass stays on the training thread (before the pass used idle cores).
ONE_THREAD_REFRESH = {"magnet-fixed-refresh-1-thread"}
# Ratios are taken against the softmax run with the same thread count.
BASELINES = {"magnet-fixed-2-threads": "softmax-2-threads"}
# cProfile buckets: the functions whose cumulative time tells where a Magnet step goes
BUCKETS = {
    "step (forward+loss+backward+update)": "step",
    "sampler.next_batch": "next_batch",
    "loss forward": "magnet_loss",
    "backward": "backward",
    "optimizer.step": "sgd",
    "share_losses (gather+cache)": "_share_losses",
    "refresh: embed_dataset": "embed_dataset",
    "refresh: k-means": "_fit",
    "adaptive probe": "_embed_probe",
}


def run_config(name: str, data_dir: str, overrides: dict, out: Path) -> dict:
    from magnetdml.training import apply_overrides, embed, train
    from magnetdml.training.config import Config

    config = apply_overrides(
        Config(),
        {**COMMON, **overrides, **CONFIGS[name], "data.data_dir": data_dir, "out": str(out / name)},
    )
    workers = embed.cpu_workers
    if name in ONE_THREAD_REFRESH:
        embed.cpu_workers = lambda *args: 1
    usage, stolen = resource.getrusage(resource.RUSAGE_SELF), _steal_seconds()
    try:
        summary = train(config, overwrite=True, progress=False).summary
    finally:
        embed.cpu_workers = workers
    seconds = summary["train_seconds"] + summary["initial_index_seconds"]
    after = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds of the whole run (data loading and the final evaluation included, all
    # threads summed): on a loaded machine the one-thread runs' CPU time is close to their
    # idle-machine time, where wall time mostly measures the wait for a core
    cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    fraction = None
    if summary["refreshes"] and config.index.refresh_lag == 0:
        # refreshes: the initial fit, one after each epoch but the last (inside
        # train_seconds) and the final one (outside); all take about as long
        per_refresh = summary["refresh_seconds"] / summary["refreshes"]
        epochs = config.train.epochs
        steps = (summary["train_seconds"] - per_refresh * (epochs - 1)) / epochs
        fraction = round(per_refresh / steps, 4)
    return {
        "config": {**COMMON, **overrides, **CONFIGS[name]},
        "images": summary["images"],
        "seconds": round(seconds, 2),
        "images_per_second": round(summary["images"] / seconds, 1),
        "refreshes": summary["refreshes"],
        "refresh_seconds": round(summary["refresh_seconds"], 2),
        "refresh_fraction_of_epoch": fraction,
        "process_cpu_seconds": round(cpu, 2),
        "load_average": list(os.getloadavg()),
        # CPU time the hypervisor gave other guests while this one wanted it, all cores: a
        # contended host slows the refresh's two threads more than one-thread steps
        "steal_seconds": None if stolen is None else round(_steal_seconds() - stolen, 2),
        "knc_error": summary["knc_error"],
        "knn_error": summary["knn_error"],
        "map_at_r": summary.get("map_at_r"),
        "ran_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "pid": os.getpid(),
    }


def _steal_seconds() -> float | None:
    """The machine's total steal time so far (``/proc/stat``; None where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def profile_magnet(data_dir: str, overrides: dict, out: Path) -> dict:
    """One Magnet epoch (with its refresh) under cProfile: cumulative seconds per bucket."""
    profiler = cProfile.Profile()
    profiler.enable()
    run_config("magnet-fixed", data_dir, {**overrides, "train.epochs": 1}, out / "profile")
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
    found = {}
    for label, func in BUCKETS.items():
        # the outermost call of a name holds its whole cumulative time (max, not sum)
        cum = [
            ct
            for (file, _, fn), (_, _, _, ct, _) in stats.items()
            if fn == func
            or (func == "magnet_loss" and fn == "forward" and file.endswith("losses/magnet.py"))
            or (func == "sgd" and fn == "step" and "optim" in file)
            or (func == "step" and fn == "step" and file.endswith("trainer.py"))
        ]
        found[label] = round(max(cum), 2) if cum else 0.0
    return {"total_seconds": round(total, 2), "cumulative_seconds": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX folder")
    parser.add_argument("--quick", action="store_true", help="1 epoch instead of 3")
    parser.add_argument("--profile", action="store_true", help="add a cProfile breakdown")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument(
        "--configs",
        nargs="*",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="configs to run (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds over all configs; ratios use each config's median",
    )
    args = parser.parse_args()
    overrides = {"train.epochs": 1} if args.quick else {}
    path = args.results or (
        Path(tempfile.gettempdir()) / "training_overhead_quick.json" if args.quick else RESULTS
    )
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("runs", {})
    results["command"] = "python benchmarks/training_overhead.py " + " ".join(
        a if a.startswith("-") or "/" not in a else "DATA_DIR" for a in sys.argv[1:]
    )
    import torch

    # the first start's (each repeat records its own load): a rerun that only recomputes the
    # summary keeps it
    if not results.get("machine"):
        results["machine"] = {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": "1 (2 for *-2-threads)",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_average_at_start": list(os.getloadavg()),
        }
    # Round-robin repeats: the host's speed drifts by ~15% over minutes even when idle (softmax
    # alone measured 617 and 728 images/s in two passes), so a slow phase must hit every
    # config alike; each config's median over the rounds is what the ratios compare.
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            for name in args.configs:
                repeats = results["runs"].setdefault(name, {"repeats": []})["repeats"]
                if len(repeats) > round_:
                    continue  # resumable
                repeats.append(run_config(name, args.data_dir, overrides, Path(tmp)))
                print(name, round_, json.dumps(repeats[-1]))
                _write(path, results)
        if args.profile and "profile" not in results:
            results["profile"] = profile_magnet(args.data_dir, overrides, Path(tmp))
            print("profile", json.dumps(results["profile"]))
    speed = {
        name: float(np.median([r["images_per_second"] for r in run["repeats"]]))
        for name, run in results["runs"].items()
    }
    ratios = {}
    for name in speed:
        base = BASELINES.get(name, "softmax")
        if not name.startswith("softmax") and base in speed:
            ratios[name] = round(speed[name] / speed[base], 3)
    results["median_images_per_second"] = {name: round(v, 1) for name, v in speed.items()}
    results["ratio_to_softmax"], results["goal"] = ratios, GOAL
    results["median_refresh_fraction_of_epoch"] = {
        name: float(np.median(fractions))
        for name, run in results["runs"].items()
        if (
            fractions := [
                r["refresh_fraction_of_epoch"]
                for r in run["repeats"]
                if r.get("refresh_fraction_of_epoch") is not None
            ]
        )
    }
    fractions = results["median_refresh_fraction_of_epoch"]
    results["summary"] = [
        _summary_row(name, run, speed, ratios, fractions.get(name), results["runs"])
        for name, run in results["runs"].items()
    ]
    print("ratio Magnet/softmax:", ratios, "goal", GOAL)
    _write(path, results)


def _summary_row(
    name: str, run: dict, speed: dict, ratios: dict, refresh_fraction: float | None, runs: dict
) -> dict:
    """One table row per config: medians over its repeats, its ratio to softmax, and the
    lowest and highest ratio within one round (each repeat against its baseline's repeat of
    the same round, which ran beside it: a slow phase of the host hits both)."""
    repeats = run["repeats"]
    last = repeats[-1]  # the errors are the same every repeat (same seed)
    base = runs.get(BASELINES.get(name, "softmax"), {}).get("repeats", [])
    paired = [
        r["images_per_second"] / b["images_per_second"] for r, b in zip(repeats, base, strict=False)
    ]
    return {
        "name": name,
        "repeats": len(repeats),
        "images_per_second": round(speed[name], 1),
        "images_per_second_min_max": [
            min(r["images_per_second"] for r in repeats),
            max(r["images_per_second"] for r in repeats),
        ],
        "ratio_to_softmax": ratios.get(name),
        "ratio_to_softmax_by_round_min_max": (
            [round(min(paired), 3), round(max(paired), 3)] if paired and name in ratios else None
        ),
        "refresh_fraction_of_epoch": refresh_fraction,
        "knc_error": last["knc_error"],
        "knn_error": last["knn_error"],
    }


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
