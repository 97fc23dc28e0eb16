"""One training step of trainer ``t`` (``trainer.py``): forward, loss, update, and the
sampler's loss cache and the running sigma^2 shared across ranks."""

from __future__ import annotations

import numpy as np
import torch


def take_step(t, batch: list[int]) -> float:
    """Forward the batch, compute the loss, update the weights and the sampler's cache;
    return the mean loss over every rank's batch."""
    indices = np.asarray(batch, dtype=np.int64)
    x, y = t.splits.train.get_batch(indices)
    x, y = x.to(t.dist.device, non_blocking=True), y.to(t.dist.device)
    if t.train_augmenter is not None:
        x = t.train_augmenter(x)
    if t.uses_index:
        clusters = torch.as_tensor(t.index.assignments_[indices], device=y.device)
        per_example = t.net(x, y, clusters)  # (B,)
        loss = per_example.mean()
    else:
        loss = t.net(x, y)
    if not torch.isfinite(loss.detach()):  # before the update: the weights stay usable
        raise ValueError(
            f"training diverged at iteration {t.iteration + 1} (epoch {t.epoch + 1}): "
            f"the loss is {float(loss.detach())}; lower train.lr (now "
            f"{t.optimizer.param_groups[0]['lr']:.3g}). The checkpoint holds the last "
            "finished epoch: rerun with a lower --train.lr and --overwrite"
        )
    value = (
        _share_losses(t, indices, per_example.detach(), t.loss_fn.last_variance)
        if t.uses_index
        else None
    )
    # Under DDP, backward all-reduces (averages) the gradients: the update of the mean of
    # the ranks' neighbourhood losses, as one process accumulating them would make.
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t.optimizer.step()
    t.iteration += 1
    if value is None:
        value = t.dist.all_reduce_mean(float(loss.detach()))
    t.loss_curve.append((t.iteration, value))
    t.timing["images"] += len(indices) * t.dist.world_size
    return value


def _share_losses(t, indices: np.ndarray, losses: torch.Tensor, s2: torch.Tensor) -> float:
    """Every rank caches every rank's losses, so the samplers stay identical; returns the
    mean loss over all ranks (every neighbourhood has the same size)."""
    if t.dist.world_size == 1:  # nothing to gather: skip packing the rows into one tensor
        values = losses.cpu().numpy().astype(np.float64)  # (B,)
        t.sampler.update_losses(indices, values)
        t.running_sigma2.update(float(s2))
        return float(values.mean())
    packed = torch.stack(
        [
            torch.as_tensor(indices, dtype=torch.float64),
            losses.double().cpu(),
            s2.double().cpu().expand(len(indices)),
        ],
        dim=1,
    )
    packed = t.dist.gather_rows(packed.to(t.dist.device)).cpu().numpy()
    t.sampler.update_losses(packed[:, 0].astype(np.int64), packed[:, 1])
    t.running_sigma2.update(float(packed[:, 2].mean()))
    return float(packed[:, 1].mean())
