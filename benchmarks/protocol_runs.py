"""The paper's training protocol (§4, Appendix B) against a plain run, on a CPU budget.

For Fashion-MNIST (``small-cnn``) and CIFAR-10 (``cifar-cnn``, the JPEG copy in
../shared/data/cifar10) it trains Magnet Loss twice with the same iteration budget:

* ``protocol``: warm start from a briefly trained softmax net (``--train.warm_start_epochs 1``),
  augmentation (random rescale up to 30%, crop back: ``--data.augment true``), test-time
  averaging of ``TTA`` augmented copies (``--eval.test_time_augment``);
* ``plain``: none of the three (the control).

Both anneal the learning rate every epoch (``--train.lr_decay``), as the paper does, so the
difference between the two rows is the protocol. The budget (chosen so that the four runs take
roughly 30-40 minutes on a loaded 2-core machine with 1 thread each) is:
``EPOCHS`` epochs of ``ITERATIONS`` neighbourhood batches (M = 12 clusters x D = 4 examples),
a stratified 20% of each training set (``--data.val_fraction 0.8`` holds the rest out, unused:
the index refresh and the warm start embed / train on every training example, and on the full
60k set they alone took minutes per pass here) and ``TTA = 8`` test-time copies (the paper
uses 16; each copy is a full pass over the 10k test images). The test sets are complete.

For the protocol runs it also records the same final model's test errors without test-time
averaging (``*_without_tta``, from ``magnetdml.training.runs.evaluate_run``).

Each run is one ``magnetdml train`` command (recorded verbatim in the results) run in its own
process; results go to benchmarks/results/protocol_runs.json, and runs already there are
skipped, so an interrupted benchmark resumes. Run folders go to runs/protocol/ (git-ignored).

    nice -n 10 .venv/bin/python benchmarks/protocol_runs.py            # all four runs
    nice -n 10 .venv/bin/python benchmarks/protocol_runs.py --only fashion-mnist --ablation

``--ablation`` adds a third run, the warm start alone (no augmentation, no averaging), to
separate the warm start's effect from the augmentation's within the same budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from magnetdml._paths import portable_command

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "protocol_runs.json"
RUNS = ROOT / "runs" / "protocol"
DATA = Path("../shared/data")

EPOCHS, ITERATIONS, TTA, VAL_FRACTION, LR_DECAY, SEED = 3, 100, 8, 0.8, 0.9, 0
DATASETS = {
    "fashion-mnist": ("small-cnn", DATA / "fashion-mnist"),
    "cifar10": ("cifar-cnn", DATA / "cifar10"),
}
PROTOCOL = {"train.warm_start_epochs": 1, "data.augment": "true", "eval.test_time_augment": TTA}
PLAIN = {"train.warm_start_epochs": 0, "data.augment": "false", "eval.test_time_augment": 0}
VARIANTS = {
    "plain": PLAIN,
    "protocol": PROTOCOL,
    "warm-start-only": {**PLAIN, "train.warm_start_epochs": 1},
}  # --ablation


def command(dataset: str, variant: str) -> list[str]:
    """The exact ``magnetdml train`` command of one run."""
    backbone, data_dir = DATASETS[dataset]
    flags = {
        "data.name": dataset,
        "data.data_dir": data_dir,
        "data.seed": SEED,
        "data.val_fraction": VAL_FRACTION,
        "model.backbone": backbone,
        "loss.name": "magnet",
        "train.epochs": EPOCHS,
        "train.iterations_per_epoch": ITERATIONS,
        "train.lr_decay": LR_DECAY,
        "train.seed": SEED,
        "train.threads": 1,
        "eval.every": 0,
        "eval.plots": "false",
        **VARIANTS[variant],
    }
    args = [
        sys.executable,
        "-m",
        "magnetdml",
        "train",
        "--quiet",
        "--overwrite",
        "--out",
        str(RUNS / f"{dataset}-{variant}"),
    ]
    for key, value in flags.items():
        args += [f"--{key}", str(value)]
    return args


def hardware() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": 1,
        "python": platform.python_version(),
        "note": "shared machine: other jobs ran at the same time (see load_average)",
    }


def run_one(dataset: str, variant: str) -> dict:
    args = command(dataset, variant)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    summary = json.loads((RUNS / f"{dataset}-{variant}" / "metrics.json").read_text())
    return {
        "dataset": dataset,
        "variant": variant,
        "backbone": DATASETS[dataset][0],
        # run from ROOT: paths relative to it, none of this machine's
        "command": portable_command(["magnetdml", *args[3:]], start=ROOT),
        "knc_error": summary["knc_error"],
        "knn_error": summary["knn_error"],
        "error_at_1": summary.get("error_at_1"),
        "map_at_r": summary.get("map_at_r"),
        "nmi": summary.get("nmi"),
        "iterations": summary["iterations"],
        "images_per_second": summary["images_per_second"],
        "train_seconds": summary["train_seconds"],
        "refresh_seconds": summary["refresh_seconds"],
        "wall_seconds": round(wall, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(DATASETS), help="one dataset only")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also run the warm start alone (no augmentation, no averaging)",
    )
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    results.update(
        {
            "description": "Magnet Loss with the paper's protocol (warm start, augmentation, "
            "test-time averaging) against a plain run with the same budget; "
            "see benchmarks/protocol_runs.py",
            "budget": {
                "epochs": EPOCHS,
                "iterations_per_epoch": ITERATIONS,
                "batch": "M=12 clusters x D=4 examples",
                "test_time_augment": TTA,
                "train_subset": f"stratified {1 - VAL_FRACTION:.0%} of the training set "
                f"(data.val_fraction {VAL_FRACTION}, held-out part unused)",
                "lr_decay_per_epoch": LR_DECAY,
                "seed": SEED,
            },
            "hardware": hardware(),
        }
    )
    for dataset in DATASETS:
        if args.only and dataset != args.only:
            continue
        for variant in ("plain", "protocol", *(("warm-start-only",) if args.ablation else ())):
            name = f"{dataset}/{variant}"
            if name in results["runs"]:
                print(f"{name}: done, skipped")
                continue
            print(f"{name}: running", flush=True)
            results["runs"][name] = run_one(dataset, variant)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            row = results["runs"][name]
            print(
                f"{name}: kNC {row['knc_error']:.4f} kNN {row['knn_error']:.4f} "
                f"{row['images_per_second']:.0f} img/s {row['wall_seconds']:.0f} s",
                flush=True,
            )
    add_errors_without_averaging(results)


def add_errors_without_averaging(results: dict) -> None:
    """The protocol runs' test errors without test-time averaging (same final model), so the
    averaging's share of the protocol's effect is visible; filled in once per run."""
    import torch

    from magnetdml.training.runs import evaluate_run

    torch.set_num_threads(1)
    for name, row in results["runs"].items():
        folder = RUNS / name.replace("/", "-")
        if "protocol" not in name or "knc_error_without_tta" in row or not folder.exists():
            continue
        errors = evaluate_run(
            folder,
            split="test",
            metrics=["knc_error", "knn_error"],
            write=False,
            test_time_augment=0,
        )["test"]
        row.update({f"{k}_without_tta": v for k, v in errors.items()})
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(
            f"{name} without averaging: kNC {errors['knc_error']:.4f} "
            f"kNN {errors['knn_error']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
