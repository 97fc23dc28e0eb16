"""Why does Magnet lose to triplet / softmax? One change at a time.

Every variant trains the same backbone on the same data for the same number of images
(48 per step) and differs from the default Magnet run in one setting. The results file keeps,
per variant, the final kNC / kNN test errors and the sigma^2 trajectory (the embedding's
scale: Magnet Loss is invariant to it, so plain SGD lets it grow, which shrinks the
effective learning rate of every layer before the embedding).

    python benchmarks/magnet_diagnosis.py --device cuda --jobs 8 --data-root ../shared/data
    python benchmarks/magnet_diagnosis.py --dataset cifar10 --jobs 2   # -> *_cifar10.json

Fashion-MNIST (MLP, no warm start) is the short-budget study; ``--dataset cifar10`` repeats
the one-change variants in the full ``classification`` experiment's CIFAR-10 setting
(cifar-cnn, one softmax warm-start epoch, 1,500 steps of 12 x 4), where Magnet is worst of
the three losses. ``--dataset omniglot`` is the many-class regime (the ``unseen``
experiment's Omniglot setting: 675 training characters of 15 drawings, small CNN, one
warm-start epoch, 1,500 steps): Magnet's temperature ``loss.scale`` and learning rate, what
they do to sigma^2, weight decay, and softmax's batches (class-balanced P x K, as it once
trained, against uniform). Resumable: variants already in the results file are skipped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"

BASE = {
    "data.name": "fashion-mnist",
    "model.backbone": "mlp",
    "train.epochs": 6,
    "train.iterations_per_epoch": 250,
    "eval.every": 1,
    "eval.plots": False,
    "sampler.classes_per_batch": 8,
    "sampler.examples_per_class": 6,
}
#: The full classification experiment's CIFAR-10 runs (experiments/classification.py), with
#: the evaluation only at the end (each one embeds the 50,000 training images).
CIFAR10_BASE = {
    "data.name": "cifar10",
    "model.backbone": "cifar-cnn",
    "train.epochs": 5,
    "train.iterations_per_epoch": 300,
    "train.warm_start_epochs": 1,
    "eval.every": 0,
    "eval.plots": False,
    "sampler.clusters_per_batch": 12,
    "sampler.examples_per_cluster": 4,
    "sampler.classes_per_batch": 6,
    "sampler.examples_per_class": 8,
}
#: One change at a time from the CIFAR-10 Magnet run; the seed-0 classification runs
#: (softmax, triplet, Magnet) are the references.
GROUP_NORM = {"model.options": "{norm: group}"}
CIFAR10_VARIANTS = {
    # cifar-cnn is the only backbone here with BatchNorm, and a Magnet batch is a neighbourhood
    # of look-alike images: is batch-statistics normalisation what fails? (all three losses)
    "magnet-group-norm": GROUP_NORM,
    "softmax-group-norm": {**GROUP_NORM, "loss.name": "softmax"},
    "triplet-group-norm": {**GROUP_NORM, "loss.name": "triplet"},
    # the nearest impostors are the hardest confusions (cat / dog): too hard to learn from
    # at this budget?
    "magnet-random-impostors": {"sampler.impostors": "random"},
    "magnet": {},
    "magnet-k1": {
        "index.clusters_per_class": 1,
        "sampler.clusters_per_batch": 8,
        "sampler.examples_per_cluster": 6,
    },
    "magnet-lr-0.01": {"train.lr": 0.01},
    "magnet-lr-0.2": {"train.lr": 0.2},
    "magnet-adam": {"train.optimizer": "adam", "train.lr": 1e-3},
    "magnet-alpha-0.25": {"loss.alpha": 0.25},
    "magnet-no-warm-start": {"train.warm_start_epochs": 0},
    "magnet-long": {"train.epochs": 15},
    "softmax-long": {"loss.name": "softmax", "train.epochs": 15},
}

#: The unseen experiment's Omniglot runs (experiments/unseen.py), test error after every epoch.
OMNIGLOT_BASE = {
    "data.name": "omniglot",
    "data.options": "{unseen_alphabets: 0.3}",
    "model.backbone": "small-cnn",
    "index.clusters_per_class": 2,
    "train.epochs": 5,
    "train.iterations_per_epoch": 300,
    "train.warm_start_epochs": 1,
    "eval.every": 1,
    "eval.plots": False,
    "sampler.clusters_per_batch": 12,
    "sampler.examples_per_cluster": 4,
    "sampler.classes_per_batch": 6,
    "sampler.examples_per_class": 8,
}
OMNIGLOT_VARIANTS = {
    "softmax-class-balanced": {"loss.name": "softmax", "sampler.batches": "class_balanced"},
    "softmax": {"loss.name": "softmax"},
    "softmax-lr-0.01": {"loss.name": "softmax", "train.lr": 0.01},
    "triplet": {"loss.name": "triplet"},
    "triplet-lr-0.01": {"loss.name": "triplet", "train.lr": 0.01},
    "magnet": {},
    "magnet-lr-0.01": {"train.lr": 0.01},
    "magnet-scale-2": {"loss.scale": 2.0},
    "magnet-scale-2-lr-0.01": {"loss.scale": 2.0, "train.lr": 0.01},
    "magnet-scale-2-lr-0.01-weight-decay": {
        "loss.scale": 2.0,
        "train.lr": 0.01,
        "train.weight_decay": 5e-4,
    },
}
VARIANTS = {
    "softmax": {"loss.name": "softmax"},
    "triplet": {"loss.name": "triplet"},
    "magnet": {},
    "magnet-weight-decay": {"train.weight_decay": 5e-4},
    "magnet-normalize": {"model.normalize": True},
    "magnet-warm-start": {"train.warm_start_epochs": 1},
    "magnet-lr-0.01": {"train.lr": 0.01},
    "magnet-lr-0.2": {"train.lr": 0.2},
    "magnet-alpha-4": {"loss.alpha": 4.0},
    "magnet-alpha-0.25": {"loss.alpha": 0.25},
    "magnet-k1": {
        "index.clusters_per_class": 1,
        "sampler.clusters_per_batch": 8,
        "sampler.examples_per_cluster": 6,
    },
    "magnet-adam": {"train.optimizer": "adam", "train.lr": 1e-3},
    "magnet-no-decay": {"train.lr_decay": 1.0},
}
# The spread over training seeds of the main contenders, and whether Magnet catches up when
# trained four times longer.
CONTENDERS = ("softmax", "triplet", "magnet", "magnet-warm-start")
for _name in CONTENDERS:
    for _seed in (1, 2):
        VARIANTS[f"{_name}-seed{_seed}"] = {**VARIANTS[_name], "train.seed": _seed}
    VARIANTS[f"{_name}-long"] = {**VARIANTS[_name], "train.epochs": 24}
# Omniglot: the spread over training seeds of each loss's best variant, and untuned Magnet.
for _name in ("softmax-lr-0.01", "triplet-lr-0.01", "magnet", "magnet-scale-2-lr-0.01"):
    for _seed in (1, 2):
        OMNIGLOT_VARIANTS[f"{_name}-seed{_seed}"] = {
            **OMNIGLOT_VARIANTS[_name],
            "train.seed": _seed,
        }
#: --dataset -> (base config, variants)
STUDIES = {
    "fashion-mnist": (BASE, VARIANTS),
    "cifar10": (CIFAR10_BASE, CIFAR10_VARIANTS),
    "omniglot": (OMNIGLOT_BASE, OMNIGLOT_VARIANTS),
}


def run_variant(job: tuple[str, dict, dict, str]) -> tuple[str, dict]:
    name, base, overrides, runs_dir = job
    import torch

    from magnetdml.training import Config, apply_overrides, train

    torch.set_num_threads(1)
    config = apply_overrides(Config(), {**base, **overrides, "out": f"{runs_dir}/{name}"})
    started = time.perf_counter()
    result = train(config, overwrite=True, progress=False)
    history = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    keep = (
        "knc_error",
        "knn_error",
        "error_at_5",
        "map_at_r",
        "nmi",
        "f1",
        "sigma2",
        "train_seconds",
        "refresh_seconds",
        "images_per_second",
        "iterations",
    )
    return name, {
        "overrides": overrides,
        "summary": {k: result.summary.get(k) for k in keep},
        "curve": [
            {
                k: r.get(k)
                for k in ("epoch", "iteration", "loss", "sigma2", "knc_error", "knn_error")
            }
            for r in history
        ],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def table_rows(variants: dict) -> list[dict]:
    """One row per variant; the contenders' rows give mean and spread over seeds 0, 1, 2."""

    def cell(values):
        values = [100 * v for v in values if v is not None]
        if not values:
            return "n/a"
        if len(values) == 1:
            return f"{values[0]:.2f}%"
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        return f"{mean:.2f}% ± {spread:.2f}"

    rows = []
    for name in variants:
        if "-seed" in name:
            continue
        group = [variants[n] for n in (name, f"{name}-seed1", f"{name}-seed2") if n in variants]
        sigma2 = variants[name]["summary"]["sigma2"]
        rows.append(
            {
                "variant": name,
                "seeds": len(group),
                "kNC test error": cell([g["summary"]["knc_error"] for g in group]),
                "kNN test error": cell([g["summary"]["knn_error"] for g in group]),
                "final sigma^2": "n/a" if sigma2 is None else f"{sigma2:.3g}",
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=tuple(STUDIES), default="fashion-mnist")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--only", nargs="*", choices=sorted({n for _, study in STUDIES.values() for n in study})
    )
    parser.add_argument(
        "--runs-dir", default=None, help="run folders (default runs/magnet_diagnosis[_cifar10])"
    )
    parser.add_argument(
        "--results",
        default=None,
        help="results file (default benchmarks/results/magnet_diagnosis[_cifar10].json)",
    )
    parser.add_argument(
        "--table", action="store_true", help="print the results file as a Markdown table and exit"
    )
    args = parser.parse_args()
    suffix = "" if args.dataset == "fashion-mnist" else f"_{args.dataset}"
    base, catalogue = STUDIES[args.dataset]
    unknown = sorted(set(args.only or ()) - set(catalogue))
    if unknown:
        parser.error(
            f"--only {' '.join(unknown)}: not a variant of the {args.dataset} study; "
            f"choose from {', '.join(catalogue)}"
        )
    runs_dir = args.runs_dir or f"runs/magnet_diagnosis{suffix}"
    results_path = Path(args.results or RESULTS_DIR / f"magnet_diagnosis{suffix}.json")
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.table:
        from magnetdml.reporting.page import markdown_table  # the one table renderer

        print(markdown_table(table_rows(results.get("variants", {}))))
        return 0
    variants = results.setdefault("variants", {})
    # variants that leave the warm start's inputs alone (alpha, impostors, K, budget) load the
    # first one's warm start instead of training it again: the same runs, sooner
    base = {
        **base,
        "data.data_dir": f"{args.data_root}/{args.dataset}",
        "train.device": args.device,
        "train.warm_start_cache": f"{runs_dir}/warm_starts",
    }
    jobs = [
        (n, base, catalogue[n], runs_dir) for n in (args.only or catalogue) if n not in variants
    ]
    results["setup"] = {
        **base,
        "hardware": {"machine": platform.node(), "cpus": os.cpu_count(), "device": args.device},
        "seed": 0,
    }
    context = multiprocessing.get_context("spawn")
    with context.Pool(max(1, args.jobs)) as pool:
        for name, outcome in pool.imap_unordered(run_variant, jobs):
            variants[name] = outcome
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            s = outcome["summary"]
            print(
                f"{name:22s} kNC {s['knc_error']:.4f} kNN {s['knn_error']:.4f} "
                f"sigma2 {s['sigma2']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
