"""Training throughput of the CPU backbones (images/s), as ratios against ``mlp``.

One training step = forward + backward + SGD (momentum 0.9) step of the full EmbeddingNet
(backbone + 64-d head) on random input of the backbone's natural size; the loss is the mean
squared embedding, so the number measures the network, not a loss. All rows are measured in
the same process with the same thread count, each paired with an ``mlp`` timing taken just
before it, so the ratios against ``mlp`` carry over to other machines (and survive a shared,
loaded machine) better than the absolute numbers.

    nice -n 10 .venv/bin/python benchmarks/backbone_throughput.py            # 2 threads
    nice -n 10 .venv/bin/python benchmarks/backbone_throughput.py --quick    # smoke run

Writes ``benchmarks/results/backbone_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from magnetdml.models import build_model

# (label, backbone, natural input shape, options)
CASES = [
    ("mlp", "mlp", (1, 28, 28), {}),
    ("small-cnn", "small-cnn", (1, 28, 28), {}),
    ("cifar-cnn", "cifar-cnn", (3, 32, 32), {}),
    ("cifar-cnn convs_per_stage=2", "cifar-cnn", (3, 32, 32), {"convs_per_stage": 2}),
    ("cifar-cnn channels=64-128-256", "cifar-cnn", (3, 32, 32), {"channels": (64, 128, 256)}),
    ("resnet depth=10 width=16", "resnet", (3, 32, 32), {"depth": 10, "width": 16}),
    ("resnet depth=18 width=64", "resnet", (3, 32, 32), {"depth": 18, "width": 64}),
]


def images_per_second(backbone: str, shape: tuple[int, ...], options: dict, batch: int,
                      min_seconds: float, seed: int = 0) -> float:
    """Images per second over steps run for at least ``min_seconds`` after 2 warm-up steps."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter init; the benchmark owns the process
    model = build_model(backbone, shape, embedding_dim=64, **options).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, generator=generator)  # (B, *shape)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model(x).square().mean()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < min_seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[48, 128])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per timing")
    parser.add_argument("--repeats", type=int, default=3, help="paired timings per row")
    parser.add_argument("--quick", action="store_true", help="0.3 s, 1 repeat, no JSON")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "backbone_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds, repeats = (0.3, 1) if args.quick else (args.seconds, args.repeats)
    rows = []
    for batch in args.batches:
        for label, backbone, shape, options in CASES:
            # On a shared machine the load drifts: time mlp right before each timing of the
            # case, take the ratio of the pair, and report the median over repeats.
            pairs = []
            for _ in range(repeats):
                reference = images_per_second(*CASES[0][1:], batch, seconds)
                pairs.append((images_per_second(backbone, shape, options, batch, seconds),
                              reference))
            ratio = statistics.median(rate / reference for rate, reference in pairs)
            rate = statistics.median(rate for rate, _ in pairs)
            params = sum(p.numel() for p in build_model(backbone, shape, **options).parameters())
            rows.append({"case": label, "backbone": backbone, "options": options,
                         "input_shape": list(shape), "batch": batch, "parameters": params,
                         "images_per_s": round(rate, 1), "ratio_vs_mlp": round(ratio, 5),
                         "mlp_images_per_s": [round(r, 1) for _, r in pairs]})
            print(f"batch {batch:4d}  {label:32s} {rate:10.1f} img/s  "
                  f"x{ratio:.5f} of mlp  ({params:,} params)", flush=True)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "benchmark": "training images/s: forward+backward+SGD step, 64-d head",
            "threads": args.threads, "torch": torch.__version__, "repeats": repeats,
            "machine": f"{platform.processor() or platform.machine()} ({platform.system()})",
            "load_average_at_end": list(os.getloadavg()),
            "note": "shared 2-core machine under load from other jobs: absolute rates are "
                    "depressed; ratio_vs_mlp is the median over paired timings (mlp timed "
                    "right before the case) and is the number to compare",
            "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
