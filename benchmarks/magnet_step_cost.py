"""Magnet's cost per epoch against softmax's, from CPU times that a loaded machine barely moves.

``training_overhead.py`` times whole runs by the wall clock, which on a shared machine mostly
measures the wait for a core. This benchmark builds both trainers of that benchmark's configs
(Fashion-MNIST, 10% of the training set = 6,000 images, small CNN, batch 48, one torch
thread, K = 4) in one process and measures, alternately over ``--repeats`` rounds:

- one training step of each (``Trainer.step``; Magnet's also draws its batch from the
  neighbourhood sampler, timed apart): the thread's CPU time (``time.thread_time``), i.e.
  the time on an idle core;
- one synchronous refresh (the eval pass over all 6,000 training images, k-means, sampler
  update), with its eval pass on the training thread alone, shared among threads on the
  idle cores as the library decides (``training.embed.cpu_workers``: none at a high load
  average), and on two threads regardless: wall time, and the process's CPU time.

From the medians: the refresh as a fraction of one epoch of softmax steps (an epoch is one
pass, 125 steps, and is refreshed once, as in the paper), and the Magnet/softmax images/s
ratio ``125 t_softmax / (125 (t_magnet + t_sampler) + t_refresh)`` with the one-thread
refresh's CPU time, and with that time divided by the shared pass's measured wall-clock
speed-up (which depends on the idle core it uses: on a loaded machine there is none).

    python benchmarks/magnet_step_cost.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "magnet_step_cost.json"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps timed per round")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    import training_overhead as overhead

    from magnetdml.training import apply_overrides, embed
    from magnetdml.training.config import Config
    from magnetdml.training.distributed import Distributed
    from magnetdml.training.trainer import Trainer

    tmp = tempfile.mkdtemp()
    trainers, batches = {}, {}
    for name in ("softmax", "magnet-fixed"):
        config = apply_overrides(
            Config(),
            {
                **overhead.COMMON,
                **overhead.CONFIGS[name],
                "data.data_dir": args.data_dir,
                "out": f"{tmp}/{name}",
            },
        ).validate()
        trainers[name] = Trainer(config, Distributed.setup("cpu"), overwrite=True)
        trainers[name].build_initial_index()
        batches[name] = iter(trainers[name].sampler)
    magnet = trainers["magnet-fixed"]
    workers = embed.cpu_workers
    times: dict[str, list[float]] = {}
    shared_workers: list[int] = []
    for _round in range(args.repeats):
        for name, trainer in trainers.items():
            step = draw = 0.0
            for _ in range(args.steps):
                started = time.thread_time()
                batch = next(batches[name])
                draw += time.thread_time() - started
                started = time.thread_time()
                trainer.step(batch)
                step += time.thread_time() - started
            times.setdefault(f"{name}_step_cpu_ms", []).append(1e3 * step / args.steps)
            times.setdefault(f"{name}_sampler_cpu_ms", []).append(1e3 * draw / args.steps)
        order = (("one_thread", 1), ("shared", None), ("two_threads", 2))
        for label, fixed in order if _round % 2 == 0 else order[::-1]:
            embed.cpu_workers = (lambda *a, n=fixed: n) if fixed else workers
            shared_workers.append(embed.cpu_workers(torch.device("cpu"), None, None, None))
            magnet.upkeep.forget_embeddings()  # the trainer keeps one pass per iteration
            try:
                cpu, wall = _cpu(), time.perf_counter()
                magnet.refresh_index()
                times.setdefault(f"refresh_{label}_wall_s", []).append(time.perf_counter() - wall)
                times.setdefault(f"refresh_{label}_cpu_s", []).append(_cpu() - cpu)
            finally:
                embed.cpu_workers = workers
    med = {k: statistics.median(v) for k, v in times.items()}
    steps_per_epoch = len(trainers["softmax"].sampler)
    softmax_epoch = steps_per_epoch * med["softmax_step_cpu_ms"] / 1e3
    magnet_steps = (
        steps_per_epoch
        * (med["magnet-fixed_step_cpu_ms"] + med["magnet-fixed_sampler_cpu_ms"])
        / 1e3
    )
    derived = {
        "steps_per_epoch": steps_per_epoch,
        "training_images": len(magnet.labels),
        "magnet_step_over_softmax_step": (
            med["magnet-fixed_step_cpu_ms"] + med["magnet-fixed_sampler_cpu_ms"]
        )
        / med["softmax_step_cpu_ms"],
        "refresh_fraction_of_epoch_one_thread_cpu": med["refresh_one_thread_cpu_s"] / softmax_epoch,
        "refresh_wall_speedup_shared_over_one_thread": med["refresh_one_thread_wall_s"]
        / med["refresh_shared_wall_s"],
        "magnet_over_softmax_images_per_s_one_thread": softmax_epoch
        / (magnet_steps + med["refresh_one_thread_cpu_s"]),
    }
    derived["refresh_wall_speedup_two_threads_over_one_thread"] = (
        med["refresh_one_thread_wall_s"] / med["refresh_two_threads_wall_s"]
    )
    # the shared pass's measured wall-clock gain applied to the one-thread CPU time (wall and
    # CPU times are not mixed: on a loaded machine a wall time is mostly the wait for a core)
    speedup = derived["refresh_wall_speedup_shared_over_one_thread"]
    derived["refresh_fraction_of_epoch_shared"] = (
        derived["refresh_fraction_of_epoch_one_thread_cpu"] / speedup
    )
    derived["magnet_over_softmax_images_per_s_shared_refresh"] = softmax_epoch / (
        magnet_steps + med["refresh_one_thread_cpu_s"] / speedup
    )
    result = {
        "command": "python benchmarks/magnet_step_cost.py "
        + " ".join("DATA_DIR" if "/" in a else a for a in sys.argv[1:]),
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": 1,
        "refresh_workers_per_pass": shared_workers,
        "load_average_at_end": list(os.getloadavg()),
        "repeats": args.repeats,
        "times": times,
        "medians": {k: round(v, 4) for k, v in med.items()},
        "derived": {k: round(v, 4) if isinstance(v, float) else v for k, v in derived.items()},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["derived"], indent=2))


if __name__ == "__main__":
    main()
