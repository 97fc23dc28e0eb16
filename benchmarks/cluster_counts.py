"""How many clusters per class, at Magnet's tuned configuration? (paper §3, seed 000)

Takes a finished ``magnetdml benchmark`` folder (its Magnet seed runs, e.g. the fine-grained
Omniglot target ``benchmarks/results/benchmark/omniglot-indic``), and trains Magnet again at
exactly the configuration the benchmark tuned and ran (its ``seen-magnet-s0/config.json``:
data, pretrained start, budget, patience, the tuned lr, alpha, scale, M and D), changing only
the cluster index: k-means with ``K`` = each of ``--ks`` clusters per class, and the adaptive
agglomerative index of seed 000 (``index.method agglomerative``: Ward clustering of each class
cut at ``index.distance_threshold`` times the class's spread, so each class gets as many
clusters as its spread supports). ``--seeds`` seeds each. Where the tuned neighbourhood of
``M`` clusters needs more impostor clusters than ``K`` per class give (few classes), ``M`` is
capped at ``1 + K (C - 1)``. The table (kNC and kNN test error,
mean ± sd over the seeds, final clusters per class) is the ``clusters`` experiment's analysis.

    python benchmarks/cluster_counts.py benchmarks/results/benchmark/omniglot-indic \\
        --out benchmarks/results/benchmark/omniglot-indic-clusters --jobs 2

Resumes like every experiment: finished runs are kept. Results: ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KS = (1, 2, 4, 8)
#: fields that stay as the benchmark's run had them, except the index (and the seed, the folder)
VARIED = ("index.method", "index.clusters_per_class", "train.seed")


def tuned_overrides(benchmark: Path, data_dir: str | None = None) -> dict:
    """The config of the benchmark's first Magnet seed run, as dotted overrides (its data
    folder, or ``data_dir``, kept; the other machine fields left to this machine)."""
    from magnetdml.training.run_identity import MACHINE_FIELDS

    config_file = benchmark / "seen-magnet-s0" / "config.json"
    if not config_file.is_file():
        raise SystemExit(f"{config_file} not found: run the benchmark with --losses magnet first")
    config = json.loads(config_file.read_text())
    machine = {f"{section}.{key}" for section, key in MACHINE_FIELDS} - {"data.data_dir"}
    if data_dir is not None:
        config["data"]["data_dir"] = data_dir
    return {
        f"{section}.{key}": value
        for section, fields in config.items()
        if isinstance(fields, dict)
        for key, value in fields.items()
        if f"{section}.{key}" not in machine
        and f"{section}.{key}" not in VARIED
        and not (section == "train" and key == "warm_start_cache")
    }


def training_classes(base: dict) -> int:
    """The number of classes the benchmark's runs train on."""
    import numpy as np

    from magnetdml.training import Config, apply_overrides
    from magnetdml.training.setup import load_splits

    return int(np.unique(load_splits(apply_overrides(Config(), base)).train.labels).size)


def specs(base: dict, ks: tuple[int, ...], seeds: int, classes: int) -> list:
    """One run per variant and seed. A neighbourhood of ``M`` clusters needs ``M - 1``
    impostor clusters, so ``M`` is capped at ``1 + K (C - 1)`` for ``K`` clusters per class
    (``K = 1`` for the agglomerative index, which may leave a class one cluster)."""
    from magnetdml.experiments.run_stage import RunSpec

    tuned_m = int(base["sampler.clusters_per_batch"])
    variants = [("kmeans", k) for k in ks] + [("agglomerative", None)]
    return [
        RunSpec(
            f"{'agglomerative' if k is None else f'k{k}'}-s{seed}",
            {
                **base,
                "index.method": method,
                **({"index.clusters_per_class": k} if k is not None else {}),
                "sampler.clusters_per_batch": min(tuned_m, 1 + (k or 1) * (classes - 1)),
                "train.seed": seed,
            },
            {"method": method, "k": k, "seed": seed},
        )
        for method, k in variants
        for seed in range(seeds)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", type=Path, help="a finished magnetdml benchmark folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="k-means K values")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--data-dir", help="the dataset's folder (default: the benchmark's)")
    args = parser.parse_args(argv)
    from magnetdml._paths import portable_command
    from magnetdml.experiments.clusters import Clusters
    from magnetdml.experiments.run_stage import train_runs
    from magnetdml.training.machine import hardware

    ks = tuple(int(k) for k in args.ks.split(","))
    base = tuned_overrides(args.benchmark, args.data_dir)
    runs = train_runs(
        specs(base, ks, args.seeds, training_classes(base)),
        args.out,
        jobs=args.jobs,
        progress=False,
        log=lambda message: print(message, file=sys.stderr),
    )
    results = Clusters().analyse(args.out, runs)
    first = next(iter(runs.values()))
    from magnetdml.training import config_from_dict

    results.update(
        {
            "command": portable_command(["python", "benchmarks/cluster_counts.py", *sys.argv[1:]])
            if argv is None
            else None,
            "benchmark": str(args.benchmark),
            "hardware": hardware(
                config_from_dict(json.loads((first.run_dir / "config.json").read_text()))
            ),
        }
    )
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    for row in results["tables"][0]["rows"]:
        print(f"{row['index']}: kNC {row['knc_error']}, kNN {row['knn_error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
