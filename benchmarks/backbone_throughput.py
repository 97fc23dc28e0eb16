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


def images_per_second(
    backbone: str,
    shape: tuple[int, ...],
    options: dict,
    batch: int,
    min_seconds: float,
    seed: int = 0,
) -> tuple[float, float]:
    """``(images per wall-clock second, images per process-CPU second / threads)`` over steps
    run for at least ``min_seconds`` of CPU time (at least one step) after one warm-up step.

    The CPU-time rate discounts the time the process waited for a core; it does not undo the
    cache and spin-wait costs of a heavily oversubscribed machine (measured: at load ~10 on
    2 cores both rates fell 10-50x and mlp-vs-mlp pairs differed 2x). Check the recorded
    load average; trust ratios only from a quiet machine.
    """
    generator = torch.Generator().manual_seed(seed)
    model = build_model(backbone, shape, embedding_dim=64, seed=seed, **options).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, generator=generator)  # (B, *shape)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model(x).square().mean()
        loss.backward()
        optimizer.step()

    step()  # allocates buffers and the momentum state
    steps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while steps < 1 or time.process_time() - cpu < min_seconds:
        step()
        steps += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps * batch / wall, steps * batch / (cpu / torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[48, 128])
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum CPU seconds per timing")
    parser.add_argument("--repeats", type=int, default=2, help="paired timings per row")
    parser.add_argument("--quick", action="store_true", help="0.3 s, 1 repeat, no JSON")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "backbone_throughput.json"
    )
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
                pairs.append(
                    (images_per_second(backbone, shape, options, batch, seconds), reference)
                )
            ratio = statistics.median(rate[1] / ref[1] for rate, ref in pairs)
            wall_ratio = statistics.median(rate[0] / ref[0] for rate, ref in pairs)
            wall = statistics.median(rate[0] for rate, _ in pairs)
            cpu = statistics.median(rate[1] for rate, _ in pairs)
            params = sum(p.numel() for p in build_model(backbone, shape, **options).parameters())
            rows.append(
                {
                    "case": label,
                    "backbone": backbone,
                    "options": options,
                    "input_shape": list(shape),
                    "batch": batch,
                    "parameters": params,
                    "images_per_cpu_s": round(cpu, 1),
                    "ratio_vs_mlp": round(ratio, 5),
                    "images_per_wall_s": round(wall, 1),
                    "wall_ratio_vs_mlp": round(wall_ratio, 5),
                    "mlp_images_per_cpu_s": [round(r[1], 1) for _, r in pairs],
                }
            )
            print(
                f"batch {batch:4d}  {label:32s} {cpu:10.1f} img/cpu-s x{ratio:.5f} of mlp "
                f"| wall {wall:9.1f} img/s x{wall_ratio:.5f}  ({params:,} params)",
                flush=True,
            )
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "benchmark": "training images/s: forward+backward+SGD step, 64-d head",
                    "threads": args.threads,
                    "torch": torch.__version__,
                    "repeats": repeats,
                    "machine": (
                        f"{platform.processor() or platform.machine()} ({platform.system()})"
                    ),
                    "load_average_at_end": list(os.getloadavg()),
                    "note": "shared 2-core machine: images_per_cpu_s = images per CPU-second per "
                    "thread; ratio_vs_mlp = median over paired CPU-time timings (mlp timed "
                    "right before the case). Under heavy load (see load_average_at_end) "
                    "both rates are depressed 10-50x and the ratios are noisy",
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
