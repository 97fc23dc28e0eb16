"""A training step's loss sharing: one process skips the packing that ranks gather, and
caches exactly what the packed path caches."""

from types import SimpleNamespace

import numpy as np
import torch

from magnetdml.clustering import ClusterIndex
from magnetdml.sampling import NeighbourhoodSampler
from magnetdml.training.sigma2 import RunningSigma2
from magnetdml.training.training_step import _share_losses


def _trainer(world_size: int):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 4)).astype(np.float32), np.repeat(np.arange(4), 30)
    index = ClusterIndex(clusters_per_class=3, seed=0).fit(x, y)
    # the packed path with one rank's rows "gathered" (what torchrun's gather gives a rank
    # alone), so both paths see the same rows
    dist = SimpleNamespace(world_size=world_size, device="cpu", gather_rows=lambda rows: rows)
    return SimpleNamespace(
        dist=dist, sampler=NeighbourhoodSampler(index, 4, 3), running_sigma2=RunningSigma2()
    )


def test_one_process_caches_what_the_gathered_rows_cache():
    fast, packed = _trainer(1), _trainer(2)
    for step in range(5):
        batch = np.asarray(fast.sampler.next_batch())
        assert batch.tolist() == packed.sampler.next_batch()
        losses = torch.rand(len(batch), generator=torch.Generator().manual_seed(step))
        s2 = torch.tensor(0.5 + step, dtype=torch.float32)
        mean_fast = _share_losses(fast, batch, losses, s2)
        mean_packed = _share_losses(packed, batch, losses, s2)
        assert mean_fast == mean_packed == float(losses.double().mean())
    np.testing.assert_array_equal(fast.sampler._losses, packed.sampler._losses)
    np.testing.assert_allclose(fast.running_sigma2.value, packed.running_sigma2.value, rtol=1e-15)
    assert fast.sampler.stats()["measured_examples"] > 0
