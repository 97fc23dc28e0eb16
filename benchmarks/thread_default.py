"""Which ``train.threads`` default survives a loaded machine: training images/s by thread count.

Each measurement is a fresh child process that sets its torch thread count first (``0`` leaves
torch's default: one thread per core), then times ``--steps`` training steps of the small CNN
(batch 48 of 28x28 images, softmax head, SGD; synthetic data, so nothing is read from disk)
after 5 warm-up steps. Thread counts 0, 1, 2 and cores - 1 run in round-robin order,
``--repeats`` rounds, under two conditions:

- ``as_found``: the machine as it is (its load average is recorded: on a shared machine other
  people's jobs are part of it);
- ``loaded``: the same with ``cores`` extra busy processes of this script's own (one-thread
  matrix products), i.e. every core already has a runnable job, which is what a shared or
  busy machine looks like to a training run.

The summary gives each count's median images/s and its ratio to one thread.

    python benchmarks/thread_default.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "thread_default.json"


def child(threads: int, steps: int) -> float:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from magnetdml.models.embedding import build_model

    model = build_model("small-cnn", (1, 28, 28), 64, seed=0)
    head = torch.nn.Linear(64, 10)
    params = [*model.parameters(), *head.parameters()]
    optimiser = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (48,), generator=generator)

    def step():
        loss = torch.nn.functional.cross_entropy(head(model(x)), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * 48 / (time.perf_counter() - start)


def _busy(stop) -> None:
    import numpy as np

    os.environ["OMP_NUM_THREADS"] = "1"
    a = np.random.default_rng(0).random((300, 300))
    while not stop.is_set():
        a = a @ a
        a /= np.abs(a).max()


def measure(counts: list[int], steps: int, repeats: int) -> dict:
    runs: dict[int, list[float]] = {c: [] for c in counts}
    for round_ in range(repeats):
        for threads in counts if round_ % 2 == 0 else counts[::-1]:
            env = dict(os.environ)
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env.pop(name, None)  # threads=0 must see torch's own default
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(threads), str(steps)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
                timeout=1800,
            )
            runs[threads].append(float(done.stdout.strip().splitlines()[-1]))
            print(f"  threads {threads}: {runs[threads][-1]:.0f} images/s", flush=True)
    medians = {c: statistics.median(v) for c, v in runs.items()}
    return {
        "images_per_second": {str(c): [round(x, 1) for x in v] for c, v in runs.items()},
        "median_images_per_second": {str(c): round(m, 1) for c, m in medians.items()},
        "ratio_to_1_thread": {str(c): round(m / medians[1], 3) for c, m in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child(*args.child))
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counts = sorted({0, 1, 2, max(cores - 1, 1)})
    results = {
        "command": "python benchmarks/thread_default.py " + " ".join(sys.argv[1:]),
        "cores": cores,
        "steps": args.steps,
        "repeats": args.repeats,
        "thread_counts": counts,
        "note": "0 = torch's default (one thread per core)",
    }
    for condition in ("as_found", "loaded"):
        print(condition, flush=True)
        stop, busy = multiprocessing.Event(), []
        if condition == "loaded":
            busy = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(cores)]
            for process in busy:
                process.start()
        load_before = os.getloadavg()
        try:
            results[condition] = measure(counts, args.steps, args.repeats)
        finally:
            stop.set()
            for process in busy:
                process.join()
        results[condition]["load_average_before_after"] = [list(load_before), list(os.getloadavg())]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({c: results[c]["ratio_to_1_thread"] for c in ("as_found", "loaded")}))


if __name__ == "__main__":
    main()
