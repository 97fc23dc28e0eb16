"""One pass of the network over a whole dataset, in eval mode with no gradients.

The cluster index must be built from embeddings all computed at the same stage of training
(paper §3.2: caching embeddings from different steps damages the neighbourhood structure), so
the refresh pauses training and embeds every training example with this function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .._faiss import faiss_threads
from .._progress import bar
from .._validation import as_embedding_matrix
from ..models.inference import InferenceForward
from .distributed import Distributed
from .machine import available_cores

CPU_BATCH, ACCELERATOR_BATCH = 128, 1024


def idle_cores() -> int:
    """CPU cores this process may use beyond torch's intra-op threads and the machine's other
    work (>= 0): ``cores - max(threads, 1-minute load average)`` rounded to the nearest
    integer, the load counting this process's own running threads. Rounded, not truncated: a
    one-thread training run alone on 2 cores keeps the load a little above 1 (1.05-1.2 here),
    and truncating left its idle core unused. A batch runs on whichever thread is free, so a
    core that is mostly idle still takes its share. On this project's shared 2-core machine a
    second thread gained nothing with no idle core: 0.95x at load ~12
    (``magnet_step_cost.json`` as of commit 1b69e4b), 1.03x at load 3 (as of 5d29a7f)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(0, int(available_cores() - max(torch.get_num_threads(), load) + 0.5))


@contextmanager
def search_on_idle_cores() -> Iterator[None]:
    """faiss's OpenMP threads raised to torch's plus :func:`idle_cores` inside the block,
    restored after: for neighbour searches that training waits for (a search trial's score
    between passes), which, like a synchronous refresh's pass, may use the cores one-thread
    training leaves idle. A 6,000 x 5,000 search for 12 neighbours: 0.030 s on two threads,
    0.053 s on one."""
    with faiss_threads(max(torch.get_num_threads(), 1) + idle_cores()):
        yield


def cpu_workers(device, dataset, augment, dist) -> int:
    """Python threads for one eval pass: ``1 + idle cores // torch threads`` on the CPU.

    Training runs with ``train.threads`` torch threads and leaves the rest of the cores idle,
    but a synchronous refresh stops training, so its pass may use them all. Threads, each
    running whole batches with torch's own thread count, rather than more OpenMP threads per
    op: they share nothing until the end, so on a loaded machine a descheduled thread delays
    only its own batches (an OpenMP team spins at every op's barrier waiting for it; see
    ``train.threads`` in docs). Only for a library dataset or a tensor (a user's torch
    ``Dataset`` may not be thread-safe), without test-time augmentation (its random draws
    would depend on the threads' order) and in a single process (under torchrun every rank
    already has its shard and its core; a one-process ``dist`` is a single process).
    """
    if (
        torch.device(device).type != "cpu"
        or augment is not None
        or (dist is not None and dist.world_size > 1)
        or isinstance(dataset, _ItemBatches)
        # any pass inside a torchrun process (the drift probe's too): one thread per rank
        or (torch.distributed.is_available() and torch.distributed.is_initialized())
    ):
        return 1
    return 1 + idle_cores() // max(torch.get_num_threads(), 1)


class _TensorBatches:
    """A tensor (or array) of inputs ``(N, ...)`` as a batch source."""

    def __init__(self, inputs: torch.Tensor) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def get_batch(self, indices):
        return self.inputs[torch.as_tensor(indices, dtype=torch.long)], None


class _ItemBatches:
    """A map-style ``torch.utils.data.Dataset`` (items ``x`` or ``(x, label, ...)``)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def get_batch(self, indices):
        items = [self.dataset[int(i)] for i in indices]
        items = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        return torch.stack([torch.as_tensor(x) for x in items]).float(), None


def as_batch_source(data):
    """What :func:`embed_dataset` reads: a library dataset (it has ``get_batch``) as it is; a
    tensor or numpy array of model inputs ``(N, C, H, W)`` (or ``(N, D)``), already
    preprocessed as the model's training inputs were; or any map-style torch ``Dataset``
    whose items are inputs or ``(input, label, ...)`` tuples."""
    if hasattr(data, "get_batch"):
        return data
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, torch.Tensor):
        if data.ndim < 2:
            raise ValueError(
                f"inputs must be a batch (N, ...) of model inputs; got shape {tuple(data.shape)}"
            )
        return _TensorBatches(data.float())
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return _ItemBatches(data)
    raise TypeError(
        f"cannot embed a {type(data).__name__}: pass a magnetdml dataset, a "
        "tensor or array of inputs (N, C, H, W), or a torch Dataset"
    )


def embed_dataset(
    model: nn.Module,
    dataset,
    *,
    device: torch.device,
    batch_size: int | None = None,
    dist: Distributed | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    copies: int = 0,
    precision: str = "float32",
) -> np.ndarray:
    """Embeddings ``(N, E)`` float32 of every example of ``dataset`` (anything
    :func:`as_batch_source` reads), in dataset order.

    With ``dist``, each rank embeds its contiguous shard and the shards are gathered, so every
    rank returns the same full array. With ``augment`` and ``copies = n > 0``, each embedding is
    the mean of the embeddings of ``n`` augmented copies (paper §4 test-time averaging).

    ``batch_size`` defaults to 128 on CPU (on one thread the small CNN embeds as fast in
    batches of 128 as of 256 and ~1.3x faster than of 1024, cifar-cnn 1.1-1.3x faster than of
    256: cache) and 1024 on accelerators. This pass is the main cost of an index refresh
    (``benchmarks/training_overhead.py``); it runs through
    :class:`~magnetdml.models.inference.InferenceForward` (BatchNorm folded into the convs, and
    oneDNN's layout on the CPU: ~2x faster on one thread, same embeddings up to float rounding).
    On the CPU the batches are shared among :func:`cpu_workers` threads, which use the cores
    training leaves idle (with ``train.threads 1`` on 2 cores: two threads); the embeddings
    are the same, each batch being computed the same way by whichever thread runs it.
    ``precision="bfloat16"`` computes the pass in bfloat16 (``InferenceForward``: ~1.9x faster
    on CPUs with bfloat16 kernels, embeddings off by ~0.2% (median); still float32 out).
    """
    dataset = as_batch_source(dataset)
    if batch_size is None:
        batch_size = CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH
    was_training = model.training
    model.eval()
    forward = InferenceForward(model, precision)  # a folded copy when it has BatchNorms
    indices = dist.shard(len(dataset)) if dist else np.arange(len(dataset))

    def embed_batch(start: int) -> torch.Tensor:
        with torch.inference_mode():
            x, _ = dataset.get_batch(indices[start : start + batch_size])
            x = x.to(device, non_blocking=True)
            if augment is not None and copies > 0:
                return sum(forward(augment(x)).float() for _ in range(copies)) / copies
            return forward(x).float()  # (B, E)

    starts = range(0, len(indices), batch_size)
    workers = min(cpu_workers(device, dataset, augment if copies else None, dist), len(starts))
    shown = bar(
        total=len(indices), desc="embedding", unit="img", progress=dist is None or dist.is_main
    )
    parts = []
    with shown, ThreadPoolExecutor(max(workers, 1), thread_name_prefix="embed") as pool:
        batches = (
            pool.map(embed_batch, starts)
            if workers > 1  # in order
            else (embed_batch(start) for start in starts)
        )
        for out in batches:
            parts.append(out)
            shown.update(len(out))
    model.train(was_training)
    dim = parts[0].shape[1] if parts else _output_dim(model)
    rows = torch.cat(parts) if parts else torch.zeros(0, dim, device=device)
    if dist is not None:
        rows = dist.gather_rows(rows)
    return rows.cpu().numpy()


def embed(
    model: nn.Module, data, *, device: str | torch.device = "cpu", batch_size: int | None = None
) -> np.ndarray:
    """``(N, E)`` float32 embeddings of ``data`` by ``model`` in eval mode, no gradients:
    ``data`` is a magnetdml dataset, a tensor or array of inputs ``(N, C, H, W)``, or any
    map-style torch ``Dataset`` (items ``x`` or ``(x, label, ...)``). The model's train/eval
    mode is restored afterwards."""
    device = torch.device(device)
    return embed_inputs(model.to(device), data, device=device, batch_size=batch_size)


def embed_inputs(model: nn.Module, data, *, device: torch.device, **options) -> np.ndarray:
    """:func:`embed_dataset` of inputs a user hands in, checked: no inputs, and embeddings
    that are not finite or so large that squared distances overflow float32 (inputs of
    1e20, a diverged model), end in one ``ValueError`` instead of NaN scores later."""
    source = as_batch_source(data)
    if len(source) == 0:
        raise ValueError("data holds no inputs (N = 0); pass at least one input")
    rows = embed_dataset(model, source, device=device, **options)
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"the model's embeddings of {int((~finite).sum())} of {len(rows)} "
            f"input(s) are not finite (NaN or inf){_largest_input(data)}; pass "
            "inputs preprocessed as the training inputs were (a run's "
            "read_images() or preprocess() does it), or retrain: the model "
            "diverged"
        )
    try:
        return as_embedding_matrix("the model's embeddings", rows)
    except ValueError as error:  # too large: where they came from helps
        raise ValueError(f"{error}{_largest_input(data)}") from None


def _largest_input(data) -> str:
    if isinstance(data, (np.ndarray, torch.Tensor)) and len(data):
        values = np.abs(np.asarray(data, dtype=np.float64))
        if np.isnan(values).all():
            return "; the inputs are NaN"
        return f"; the inputs go up to |x| = {float(np.nanmax(values)):.3g}"
    return ""


def _output_dim(model: nn.Module) -> int:
    return int(getattr(model, "embedding_dim", 0))
