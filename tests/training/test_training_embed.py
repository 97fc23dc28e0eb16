"""``embed_dataset`` (the refresh's pass over the training set) against the slow obvious
reference ``model.eval(); with torch.no_grad(): model(x)``, one example at a time."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from torch import nn

from magnetdml.data import ArrayDataset
from magnetdml.models import build_model
from magnetdml.training.distributed import Distributed
from magnetdml.training.embed import embed_dataset

CPU = torch.device("cpu")
CASES = [
    ("mlp", (1, 28, 28), {"hidden_sizes": (32, 16), "batch_norm": True}),
    ("small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16}),
    ("small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16, "batch_norm": True}),
    ("cifar-cnn", (3, 32, 32), {"channels": (4, 8, 16)}),
]


def dataset(shape, n=45, seed=0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return ArrayDataset(
        images, rng.integers(0, 3, size=n), mean=(0.3,) * shape[0], std=(0.4,) * shape[0]
    )


def model(name, shape, options) -> nn.Module:
    """In training mode, with BatchNorm statistics that are not the identity map."""
    net = build_model(name, shape, embedding_dim=6, seed=0, **options)
    net.train()
    with torch.no_grad():  # two training-mode forwards move the running statistics
        for seed in (1, 2):
            net(torch.randn(16, *shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1)
    return net


def reference(net, data, augment=None, copies=0) -> np.ndarray:
    """One example at a time, plain eval-mode forward."""
    net = copy.deepcopy(net).eval()
    rows = []
    with torch.no_grad():
        for i in range(len(data)):
            x, _ = data.get_batch([i])
            rows.append(
                net(x) if augment is None else sum(net(augment(x)) for _ in range(copies)) / copies
            )
    return torch.cat(rows).numpy()


def assert_same(fast: np.ndarray, ref: np.ndarray) -> None:
    assert fast.shape == ref.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
@pytest.mark.parametrize("batch_size", [None, 7])
def test_same_embeddings_as_a_plain_forward_in_dataset_order(name, shape, options, batch_size):
    data, net = dataset(shape), model(name, shape, options)
    state = copy.deepcopy(net.state_dict())
    fast = embed_dataset(net, data, device=CPU, batch_size=batch_size)
    assert_same(fast, reference(net, data))
    # the training model is untouched: still training, same weights and statistics
    assert net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_test_time_augmentation_averages_the_copies():
    shape, options = (1, 28, 28), {"channels": (4, 8), "hidden": 16, "batch_norm": True}
    data, net = dataset(shape, n=10), model("small-cnn", shape, options)
    flip = lambda x: x.flip(-1)  # noqa: E731 - deterministic, so the reference can repeat it
    fast = embed_dataset(net, data, device=CPU, augment=flip, copies=3)
    assert_same(fast, reference(net, data, augment=flip, copies=3))


def test_background_thread_embeds_a_snapshot_like_the_main_thread():
    # the background refresh (index.refresh_lag) calls embed_dataset on a copy from a thread
    shape, options = (3, 32, 32), {"channels": (4, 8, 16)}
    data, net = dataset(shape), model("cifar-cnn", shape, options)
    shadow, result = copy.deepcopy(net), {}
    thread = threading.Thread(
        target=lambda: result.update(rows=embed_dataset(shadow, data, device=CPU))
    )
    thread.start()
    thread.join()
    assert_same(result["rows"], reference(net, data))


class _Rank(Distributed):
    """One rank of two, without a process group: ``gather_rows`` returns this rank's rows."""

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows


def test_ranks_embed_their_shards_in_order():
    shape, options = (1, 28, 28), {"channels": (4, 8), "hidden": 16}
    data, net = dataset(shape), model("small-cnn", shape, options)
    parts = [embed_dataset(net, data, device=CPU, dist=_Rank(rank, 2, CPU)) for rank in (0, 1)]
    assert [len(p) for p in parts] == [22, 23]
    assert_same(np.concatenate(parts), reference(net, data))


@pytest.mark.parametrize("workers", [2, 3])
def test_threads_on_idle_cores_give_the_same_array_in_order(workers, monkeypatch):
    from magnetdml.training import embed as embed_module

    data, net = dataset((1, 28, 28), n=53), model(*CASES[2])
    monkeypatch.setattr(embed_module, "cpu_workers", lambda *args: 1)
    alone = embed_dataset(net, data, device=CPU, batch_size=5)
    used = []
    monkeypatch.setattr(embed_module, "cpu_workers", lambda *args: used.append(1) or workers)
    shared = embed_dataset(net, data, device=CPU, batch_size=5)
    assert used and np.array_equal(shared, alone)  # batch by batch the same computation


def test_threads_only_for_library_data_without_augmentation():
    from magnetdml.training.embed import as_batch_source, cpu_workers, idle_cores

    data = as_batch_source(dataset((1, 28, 28)))
    assert cpu_workers(CPU, data, None, None) == 1 + idle_cores() // torch.get_num_threads()
    assert cpu_workers(CPU, data, lambda x: x, None) == 1  # random draws: ordered
    assert cpu_workers(torch.device("meta"), data, None, None) == 1  # accelerators: as is
    items = as_batch_source(torch.utils.data.TensorDataset(torch.zeros(4, 3)))
    assert cpu_workers(CPU, items, None, None) == 1  # user Dataset: as is


def test_a_one_process_run_shares_its_refresh_with_idle_cores(monkeypatch):
    # Training always passes its Distributed; with one process it is not a torchrun rank, and
    # its refresh must get the idle cores (it once got one thread whatever the machine).
    from magnetdml.training import embed as embed_module

    monkeypatch.setattr(embed_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(embed_module.os, "getloadavg", lambda: (1.1, 1.0, 1.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    data = embed_module.as_batch_source(dataset((1, 28, 28)))
    assert embed_module.cpu_workers(CPU, data, None, Distributed(0, 1, CPU)) == 2
    assert embed_module.cpu_workers(CPU, data, None, _Rank(0, 2, CPU)) == 1  # a rank: its core


def test_no_extra_threads_when_the_load_leaves_no_idle_core(monkeypatch):
    from magnetdml.training import embed as embed_module

    monkeypatch.setattr(
        embed_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False
    )
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(embed_module.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert embed_module.idle_cores() == 3  # 4 cores - 1.2 busy, to the nearest core
    monkeypatch.setattr(embed_module.os, "getloadavg", lambda: (2.6, 1.0, 1.0))
    assert embed_module.idle_cores() == 1  # 1.4 idle
    # one training thread alone on 2 cores: the load sits a little above 1, a core is idle
    monkeypatch.setattr(embed_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(embed_module.os, "getloadavg", lambda: (1.15, 1.0, 1.0))
    assert embed_module.idle_cores() == 1
    monkeypatch.setattr(embed_module.os, "getloadavg", lambda: (12.0, 12.0, 12.0))
    assert embed_module.idle_cores() == 0


@pytest.mark.parametrize(("load", "inside"), [(1.1, 4), (12.0, 1)])
def test_a_search_training_waits_for_takes_the_idle_cores_and_gives_them_back(
    load, inside, monkeypatch
):
    from magnetdml._faiss import faiss
    from magnetdml.training import embed as embed_module

    before = faiss.omp_get_max_threads()
    monkeypatch.setattr(embed_module, "available_cores", lambda: 4)
    monkeypatch.setattr(embed_module.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    with embed_module.search_on_idle_cores():
        assert faiss.omp_get_max_threads() == inside  # 1 + 3 idle cores; none at load 12
    assert faiss.omp_get_max_threads() == before
    with pytest.raises(RuntimeError), embed_module.search_on_idle_cores():
        raise RuntimeError("a failed search")
    assert faiss.omp_get_max_threads() == before
