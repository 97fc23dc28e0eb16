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
  average), on two threads regardless, and shared in bfloat16 (``--index.refresh_precision
  bfloat16``): wall time, and the process's CPU time.

From the medians: the refresh as a fraction of one epoch of softmax steps (an epoch is one
pass, 125 steps, and is refreshed once, as in the paper), and the Magnet/softmax images/s
ratio ``125 t_softmax / (125 (t_magnet + t_sampler) + t_refresh)`` with the one-thread
refresh's CPU time, and with that time divided by the shared pass's measured wall-clock
speed-up (which depends on the idle core it uses: on a loaded machine there is none), in
float32 and in bfloat16.

Where the ceiling is: every round also times, on the training thread, the refresh's eval pass
alone, without k-means, as the library runs it (oneDNN, batches of 128) and in other forms
(batches of 256 and 512; bfloat16; the plain NCHW forward, channels_last and the plain
forward under bfloat16 autocast instead of oneDNN), and the core's practical float32 peak
on one thread (``peak_gflops``). With the multiply-adds of the model's convolutions and
linear layers per image (``flops_per_image``, counted by forward hooks) the pass's GFLOP/s is
set against that peak, and ``bound_*`` give the images/s ratio Magnet would reach with no
step overhead at all (``t_magnet + t_sampler = t_softmax``): with the one-thread refresh as
measured, and with a pass running at the peak.

    python benchmarks/magnet_step_cost.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "magnet_step_cost.json"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def flops_per_image(model, input_shape) -> int:
    """Floating-point operations (2 x multiply-adds) of ``model``'s convolutions and linear
    layers on one input of ``input_shape``, counted by forward hooks in eval mode."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += 2 * output.numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def peak_gflops() -> dict[str, float]:
    """One thread's float32 rate (GFLOP/s of thread CPU time, best of three) on a 2048^3
    ``torch.mm`` (MKL) and on a 256-channel 3x3 convolution in oneDNN's layout (what the
    refresh pass runs on): the faster one is the core's practical peak."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(8, 256, 32, 32)
    probes = {
        "matmul": (lambda: torch.mm(a, b), 2 * 2048**3),
        "onednn_conv": (lambda: conv(x.to_mkldnn()), 2 * x.numel() * 256 * 9),
    }
    out = {}
    with torch.inference_mode():
        for name, (run, flops) in probes.items():
            best = float("inf")
            for _ in range(3):
                started = time.thread_time()
                run()
                best = min(best, time.thread_time() - started)
            out[name] = flops / best / 1e9
    return out


def pass_variants(model, dataset) -> dict[str, float]:
    """Thread CPU seconds of one eval pass over ``dataset`` in each form (module docstring)."""
    from magnetdml.models.inference import InferenceForward

    n = len(dataset)
    model.eval()
    onednn = InferenceForward(model)
    autocast = InferenceForward(model, "bfloat16")
    autocast.onednn = False  # the library's own fallback: the plain forward under autocast
    forms = {
        "onednn_batch128": (onednn, 128, None),  # the refresh's own form, without k-means
        "onednn_batch256": (onednn, 256, None),
        "onednn_batch512": (onednn, 512, None),
        "onednn_bfloat16_batch128": (InferenceForward(model, "bfloat16"), 128, None),
        "nchw_batch128": (model, 128, None),
        "channels_last_batch128": (model, 128, torch.channels_last),
        # what the bfloat16 refresh falls back to without oneDNN's bfloat16 kernels
        "nchw_autocast_bfloat16_batch128": (autocast, 128, None),
    }
    out = {}
    with torch.inference_mode():
        for name, (forward, batch, layout) in forms.items():
            started = time.thread_time()
            for start in range(0, n, batch):
                x, _ = dataset.get_batch(np.arange(start, min(start + batch, n)))
                forward(x if layout is None else x.contiguous(memory_format=layout))
            out[name] = time.thread_time() - started
    model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps timed per round")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_at_start = list(os.getloadavg())
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
        order = (
            ("one_thread", 1, "float32"),
            ("shared", None, "float32"),
            ("two_threads", 2, "float32"),
            ("shared_bfloat16", None, "bfloat16"),  # --index.refresh_precision bfloat16
        )
        for label, fixed, precision in order if _round % 2 == 0 else order[::-1]:
            embed.cpu_workers = (lambda *a, n=fixed: n) if fixed else workers
            shared_workers.append(embed.cpu_workers(torch.device("cpu"), None, None, None))
            magnet.upkeep.forget_embeddings()  # the trainer keeps one pass per iteration
            magnet.upkeep.precision = precision
            try:
                cpu, wall = _cpu(), time.perf_counter()
                magnet.refresh_index()
                times.setdefault(f"refresh_{label}_wall_s", []).append(time.perf_counter() - wall)
                times.setdefault(f"refresh_{label}_cpu_s", []).append(_cpu() - cpu)
            finally:
                embed.cpu_workers = workers
                magnet.upkeep.precision = "float32"
        for name, seconds in pass_variants(magnet.model, magnet.splits.train).items():
            times.setdefault(f"pass_{name}_cpu_s", []).append(seconds)
        for name, rate in peak_gflops().items():
            times.setdefault(f"peak_{name}_gflops", []).append(rate)
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
    # the same with bfloat16 refreshes (shared as the library runs them): their wall-clock
    # gain over the one-thread float32 refresh applied to its CPU time, as above
    speedup_low = med["refresh_one_thread_wall_s"] / med["refresh_shared_bfloat16_wall_s"]
    derived["refresh_wall_speedup_shared_bfloat16_over_one_thread"] = speedup_low
    derived["refresh_fraction_of_epoch_shared_bfloat16"] = (
        derived["refresh_fraction_of_epoch_one_thread_cpu"] / speedup_low
    )
    derived["magnet_over_softmax_images_per_s_shared_bfloat16_refresh"] = softmax_epoch / (
        magnet_steps + med["refresh_one_thread_cpu_s"] / speedup_low
    )
    # the ceiling: the pass's arithmetic rate, and the ratio with no Magnet step overhead
    flops = flops_per_image(magnet.model, magnet.splits.train.get_batch([0])[0].shape[1:])
    images = len(magnet.labels)
    derived["flops_per_image"] = flops
    derived["refresh_pass_gflops"] = images * flops / med["refresh_one_thread_cpu_s"] / 1e9
    peak = max(med["peak_matmul_gflops"], med["peak_onednn_conv_gflops"])
    derived["peak_gflops"] = peak
    derived["refresh_pass_over_peak"] = derived["refresh_pass_gflops"] / peak
    derived["bound_no_step_overhead_one_thread_refresh"] = softmax_epoch / (
        softmax_epoch + med["refresh_one_thread_cpu_s"]
    )
    # the same with the refresh's pass shared with the idle core, as the library runs it
    derived["bound_no_step_overhead_shared_refresh"] = softmax_epoch / (
        softmax_epoch + med["refresh_one_thread_cpu_s"] / speedup
    )
    derived["bound_no_step_overhead_refresh_at_peak"] = softmax_epoch / (
        softmax_epoch + images * flops / (peak * 1e9)
    )
    derived["pass_variants_over_onednn_batch128"] = {
        key.removeprefix("pass_").removesuffix("_cpu_s"): med[key]
        / med["pass_onednn_batch128_cpu_s"]
        for key in med
        if key.startswith("pass_")
    }
    result = {
        "command": "python benchmarks/magnet_step_cost.py "
        + " ".join("DATA_DIR" if "/" in a else a for a in sys.argv[1:]),
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": 1,
        "refresh_workers_per_pass": shared_workers,
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "repeats": args.repeats,
        "times": times,
        "medians": {k: round(v, 4) for k, v in med.items()},
        "derived": {k: _rounded(v) for k, v in derived.items()},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["derived"], indent=2))


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


if __name__ == "__main__":
    main()
