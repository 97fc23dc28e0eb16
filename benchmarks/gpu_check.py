"""The GPU check run by ``benchmarks/gpu_check.sh``: CUDA training with and without AMP, and
exact evaluation at a million references, with a table at the end.

Training (``magnetdml.training.train``, CIFAR-10, ``cifar-cnn``, a short budget of
``--epochs`` x ``--iterations`` steps, the Magnet index refreshed every epoch): softmax,
triplet and Magnet, each

- on the device in float32 with seeds 0 and 1 (their difference is the seed noise),
- on the device with AMP (``train.amp``), seed 0,
- on the CPU in float32, seed 0 (``--cpu-reference``, on by default),

recording images/s (end to end, index refreshes included) and the kNC / kNN test errors. A
device run "matches" when its kNN error is within ``max(2 x seed noise, 1.5 points)`` of the
CPU run's (AMP: of the device float32 run's).

Evaluation: ``--references`` Gaussian points (128-d, classes of 1000) and ``--queries``
held-out queries: ``magnetdml.evaluate`` (exact faiss search on the CPU cores) against the
same exact search done with a float32 matmul + top-k on the device, both scored with the
library's retrieval functions; times and the largest metric difference.

``--tiny`` shrinks everything (digits and an MLP instead of CIFAR-10, 20k references) so the
whole script runs on a CPU in a test: ``--device cpu --tiny``. Results: ``--out``/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

LOSSES = ("softmax", "triplet", "magnet")


def train_run(name: str, loss: str, device: str, amp: bool, seed: int, args, out: Path) -> dict:
    from magnetdml.training import apply_overrides, train
    from magnetdml.training.config import Config

    data = (
        {"data.name": "digits", "model.backbone": "mlp"}
        if args.tiny
        else {
            "data.name": "cifar10",
            "data.data_dir": str(Path(args.data_root) / "cifar10"),
            "model.backbone": "cifar-cnn",
        }
    )
    overrides = {
        **data,
        "loss.name": loss,
        "train.device": device,
        "train.amp": amp,
        "train.seed": seed,
        "train.epochs": args.epochs,
        "train.iterations_per_epoch": args.iterations,
        "train.threads": 0,
        "eval.every": 0,
        "eval.plots": False,
        "out": str(out / name),
    }
    config = apply_overrides(Config(), overrides)
    started = time.perf_counter()
    summary = train(config, overwrite=True, progress=False).summary
    return {
        "name": name,
        "loss": loss,
        "device": device,
        "amp": amp,
        "seed": seed,
        "images_per_second": summary.get("images_per_second"),
        "knc_error": summary.get("knc_error"),
        "knn_error": summary.get("knn_error"),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def exact_search_torch(queries, reference, k, device, rows=1024):
    """``(sq_distances, indices)`` of the ``k`` nearest references, float32 matmul + topk."""
    ref = torch.from_numpy(reference).to(device)
    ref_sq = (ref * ref).sum(1)
    dists, indices = [], []
    for start in range(0, len(queries), rows):
        q = torch.from_numpy(queries[start : start + rows]).to(device)
        d = (q * q).sum(1, keepdim=True) + ref_sq[None, :] - 2.0 * q @ ref.T  # (B, N)
        values, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(values.clamp_min_(0).cpu())
        indices.append(idx.cpu())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return torch.cat(dists).numpy(), torch.cat(indices).numpy()


def evaluation_check(args) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from evaluation_million import make_data

    from magnetdml.evaluation import evaluate
    from magnetdml.evaluation.retrieval import map_at_r, precision_at_1, r_precision

    n, queries_n = args.references, args.queries
    classes = max(n // 1000, 2)
    ref, ref_y = make_data(n, seed=0, classes=classes)
    x, y = make_data(queries_n, seed=7, classes=classes)
    names = ["precision_at_1", "r_precision", "map_at_r"]
    started = time.perf_counter()
    cpu = evaluate(x, y, ref, ref_y, metrics=names)
    cpu_seconds = time.perf_counter() - started
    relevant = np.bincount(ref_y, minlength=classes)[y]  # R per query
    k = int(relevant.max())
    started = time.perf_counter()
    _, indices = exact_search_torch(x, ref, k, args.device)
    matches = ref_y[indices] == y[:, None]
    device_metrics = {
        "precision_at_1": float(precision_at_1(matches).mean()),
        "r_precision": float(r_precision(matches, relevant).mean()),
        "map_at_r": float(map_at_r(matches, relevant).mean()),
    }
    device_seconds = time.perf_counter() - started
    return {
        "references": n,
        "queries": queries_n,
        "dim": int(ref.shape[1]),
        "cpu_evaluate_seconds": round(cpu_seconds, 2),
        "device_search_seconds": round(device_seconds, 2),
        "cpu_metrics": cpu,
        "device_metrics": device_metrics,
        "max_abs_difference": max(abs(cpu[m] - device_metrics[m]) for m in names),
    }


def verdicts(runs: list[dict]) -> None:
    """Mark each run ``matches`` against its reference run's kNN error (see module doc)."""
    by = {(r["loss"], r["device"], r["amp"], r["seed"]): r for r in runs}
    for run in runs:
        same = by.get((run["loss"], run["device"], False, 1 - run["seed"]))
        noise = abs(run["knn_error"] - same["knn_error"]) if same and not run["amp"] else None
        if run["amp"]:
            ref = by.get((run["loss"], run["device"], False, 0))
            fp32 = by.get((run["loss"], run["device"], False, 1))
            noise = abs(ref["knn_error"] - fp32["knn_error"]) if ref and fp32 else None
        else:
            ref = by.get((run["loss"], "cpu", False, 0)) if run["device"] != "cpu" else None
        run["seed_noise"] = noise
        if ref is None or ref is run or noise is None:
            run["matches"] = None
            continue
        run["reference"] = ref["name"]
        run["matches"] = bool(abs(run["knn_error"] - ref["knn_error"]) <= max(2 * noise, 0.015))


def table(runs: list[dict], evaluation: dict | None) -> str:
    lines = [
        "| run | images/s | kNC error | kNN error | seed noise | matches |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        noise = "" if r.get("seed_noise") is None else f"{100 * r['seed_noise']:.2f}"
        matches = {
            None: "",
            True: f"yes ({r.get('reference')})",
            False: f"NO ({r.get('reference')})",
        }[r.get("matches")]
        lines.append(
            f"| {r['name']} | {r['images_per_second'] or 0:.0f} | "
            f"{100 * r['knc_error']:.2f}% | {100 * r['knn_error']:.2f}% | {noise} | "
            f"{matches} |"
        )
    if evaluation:
        e = evaluation
        lines += [
            "",
            f"evaluation, {e['references']:,} references x {e['dim']}-d, "
            f"{e['queries']:,} queries: magnetdml.evaluate (CPU faiss) "
            f"{e['cpu_evaluate_seconds']} s, device matmul+topk "
            f"{e['device_search_seconds']} s, largest metric difference "
            f"{e['max_abs_difference']:.2e}",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="digits + MLP, 20k references")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--out", default=None, help="folder for runs and results.json")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--iterations", type=int, default=None, help="iterations per epoch (default 300; --tiny: 5)"
    )
    parser.add_argument(
        "--references",
        type=int,
        default=None,
        help="evaluation references (default 1,000,000; --tiny: 20,000)",
    )
    parser.add_argument(
        "--queries", type=int, default=None, help="evaluation queries (default 10,000; --tiny: 200)"
    )
    parser.add_argument("--losses", nargs="*", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--no-cpu-reference", dest="cpu_reference", action="store_false")
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "evaluation"])
    parser.add_argument(
        "--budget",
        type=float,
        default=420.0,
        help="seconds after which no new training run starts (the evaluation "
        "and the table still follow); the shell script stops at 480",
    )
    args = parser.parse_args(argv)
    args.iterations = args.iterations or (5 if args.tiny else 300)
    args.references = args.references or (20_000 if args.tiny else 1_000_000)
    args.queries = args.queries or (200 if args.tiny else 10_000)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_check_"))
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    results = {
        "device": args.device,
        "device_name": device_name,
        "command": "benchmarks/gpu_check.sh " + " ".join(argv or sys.argv[1:]),
        "torch": torch.__version__,
        "runs": [],
        "evaluation": None,
    }
    amp_choices = (False, True) if args.device != "cpu" or args.tiny else (False,)
    plan = []
    if "training" not in args.skip:
        for loss in args.losses:
            plan.append((f"{loss}-{args.device}-fp32-seed0", loss, args.device, False, 0))
            plan.append((f"{loss}-{args.device}-fp32-seed1", loss, args.device, False, 1))
            if True in amp_choices:
                plan.append((f"{loss}-{args.device}-amp-seed0", loss, args.device, True, 0))
            if args.cpu_reference and args.device != "cpu":
                plan.append((f"{loss}-cpu-fp32-seed0", loss, "cpu", False, 0))
    started = time.perf_counter()
    training_budget = args.budget * (0.75 if "evaluation" not in args.skip else 1.0)
    for name, loss, device, amp, seed in plan:
        if time.perf_counter() - started > training_budget:
            print(f"skipping {name}: past {training_budget:.0f} s of the budget", flush=True)
            results.setdefault("skipped", []).append(name)
            continue
        print(f"training {name} ...", flush=True)
        results["runs"].append(train_run(name, loss, device, amp, seed, args, out))
        print(f"  {json.dumps(results['runs'][-1])}", flush=True)
        _write(out, results)
    verdicts(results["runs"])
    if "evaluation" not in args.skip:
        print(f"evaluation at {args.references:,} references ...", flush=True)
        results["evaluation"] = evaluation_check(args)
    _write(out, results)
    print(table(results["runs"], results["evaluation"]))
    print(f"results: {out / 'results.json'}")
    return 0


def _write(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
