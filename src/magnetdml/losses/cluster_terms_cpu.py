"""Magnet Loss's cluster terms on the CPU: a numpy forward and its gradient written out.

A training step's loss is a few dozen operations on a ``(B, E)`` batch of ~48 x 64 numbers.
On the CPU each torch operation, and each autograd node behind it, costs far more than its
arithmetic: the conv layers before it have evicted the dispatcher's code and data from the
core's caches. Measured inside Fashion-MNIST training steps of the small CNN on one thread,
the autograd form of these terms cost ~1 ms of a ~25 ms step, nearly all that a Magnet step
cost beyond a softmax step; this form costs under half as much (a Magnet step over a softmax
step: 1.062 before, 1.035 after, ``benchmarks/magnet_step_cost.py``). Same equations as
:func:`~magnetdml.losses.magnet.cluster_terms` (their autograd form stays for other devices);
the values agree to float rounding and ``torch.autograd.gradcheck`` passes.

With ``x_n`` the batch-centred embeddings, ``mu_m`` the batch cluster means, ``c(n)`` the
cluster of ``n``, ``d_nm = ||x_n - mu_m||^2``, ``intra_n = ||x_n - mu_c(n)||^2``,
``s2 = sum_n intra_n / (B - 1)`` (or a fixed variance), ``t = s / (2 s2)``::

    own_n = t intra_n        imp_n = logsumexp_{m: class(m) != C(n)} (-t d_nm)

and, for upstream gradients ``g_own``, ``g_imp``, ``g_s2`` and the impostor softmax
``p_nm = exp(-t d_nm - imp_n)`` (0 on the example's own class)::

    dL/dt       = sum_n g_own_n intra_n - sum_nm g_imp_n p_nm d_nm
    dL/dd_nm    = -t g_imp_n p_nm                       (0 where d_nm was clamped at 0)
    dL/dintra_n = t g_own_n + (g_s2 - dL/dt t / s2) / (B - 1)     (estimated s2 only)
    dL/dx_n     = 2 sum_m dL/dd_nm (x_n - mu_m) + 2 dL/dintra_n (x_n - mu_c(n))
                  + dL/dmu_c(n) / |c(n)|
    dL/dmu_m    = -2 sum_n dL/dd_nm (x_n - mu_m) - 2 sum_{n in m} dL/dintra_n (x_n - mu_m)

then centring's ``dL/dembedding_n = dL/dx_n - mean_k dL/dx_k``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .cluster_batch import BatchClusters, check_finite, check_variance


class _Saved(NamedTuple):
    """What the forward pass keeps for the backward one (shapes as in the module docstring)."""

    xc: np.ndarray  # (B, E) centred embeddings
    membership: np.ndarray  # (M, B) one-hot
    counts: np.ndarray  # (M,)
    means: np.ndarray  # (M, E)
    residual: np.ndarray  # (B, E) x_n - mu_c(n)
    intra: np.ndarray  # (B,)
    s2: np.floating
    t: np.floating  # s / (2 s2)
    squared: np.ndarray  # (B, M) d_nm
    unclamped: np.ndarray  # (B, M) d_nm computed >= 0
    softmax: np.ndarray  # (B, M) p_nm
    estimated: bool  # s2 estimated from the batch (else a fixed variance)


class CPUClusterTerms(torch.autograd.Function):
    """``(own (B,), impostors (B,), s2 ())`` of a float32/float64 CPU batch ``x (B, E)``.

    ``layout``: the batch's :class:`BatchClusters`; ``variance``: a fixed sigma^2 or None
    (estimate ``s2``); ``scale``: the inverse temperature ``s``. Raises on non-finite
    embeddings and on an estimate ``s2`` that is not > 0. Differentiable once (a second
    derivative raises).
    """

    @staticmethod
    def forward(ctx, x, layout: BatchClusters, variance, scale):
        embeddings = x.detach().numpy()  # (B, E), shares memory: never written to
        check_finite(bool(np.isfinite(embeddings).all()))
        # like torch, overflow gives inf/NaN without a warning (training then says in one
        # line that it diverged)
        with np.errstate(all="ignore"):
            (own, impostors, s2), ctx.saved = _forward(embeddings, layout, variance, scale)
        return torch.from_numpy(own), torch.from_numpy(impostors), torch.from_numpy(s2)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_own, g_impostors, g_s2) -> tuple[Any, ...]:
        with np.errstate(all="ignore"):
            g_x = _backward(ctx.saved, g_own.numpy(), g_impostors.numpy(), float(g_s2))
        return torch.from_numpy(g_x), None, None, None


def _forward(embeddings: np.ndarray, layout: BatchClusters, variance, scale):
    """``((own, impostors, s2), saved)``: the terms, and what :func:`_backward` needs."""
    dtype, batch = embeddings.dtype.type, embeddings.shape[0]
    counts = layout.counts.astype(embeddings.dtype)  # (M,)
    # translation invariant: centring keeps the expanded distances below free of
    # cancellation for embeddings far from 0
    xc = embeddings - embeddings.sum(axis=0) / dtype(batch)  # (B, E)
    # (M, B) one-hot membership: the cluster sums as one small matmul (np.add.at is ~10x
    # slower at this size)
    membership = np.zeros((counts.size, batch), dtype=embeddings.dtype)
    membership[layout.member_of, np.arange(batch)] = 1.0
    means = (membership @ xc) / counts[:, None]  # (M, E)
    residual = xc - means[layout.member_of]  # (B, E)
    intra = np.einsum("ne,ne->n", residual, residual)  # (B,)
    if variance is None:
        s2 = intra.sum() / dtype(batch - 1)
        check_variance(float(s2))
    else:
        s2 = dtype(variance)
    raw = (  # (B, M): ||x_n||^2 - 2 x_n.mu_m + ||mu_m||^2
        np.einsum("ne,ne->n", xc, xc)[:, None]
        - dtype(2.0) * (xc @ means.T)
        + np.einsum("me,me->m", means, means)[None, :]
    )
    squared = np.maximum(raw, dtype(0.0))
    t = dtype(scale) / (dtype(2.0) * s2)
    logits = np.where(layout.same_class, dtype(-np.inf), -squared * t)  # (B, M)
    peak = logits.max(axis=1, keepdims=True)  # finite: every row has an impostor
    weights = np.exp(logits - peak)
    total = weights.sum(axis=1)
    impostors = np.log(total) + peak[:, 0]
    softmax = weights / total[:, None]  # (B, M) p_nm, 0 on the own class
    saved = _Saved(
        xc=xc, membership=membership, counts=counts, means=means, residual=residual,
        intra=intra, s2=s2, t=t, squared=squared, unclamped=raw >= 0, softmax=softmax,
        estimated=variance is None,
    )  # fmt: skip
    return (intra * t, impostors, np.array(s2)), saved


def _backward(saved: _Saved, g_own: np.ndarray, g_impostors: np.ndarray, g_s2: float):
    """``dL/dembeddings (B, E)`` from the upstream gradients (module docstring)."""
    xc, membership, counts, means, residual, intra, s2, t, squared, unclamped, softmax, _ = saved
    dtype, batch = xc.dtype.type, xc.shape[0]
    pulled = g_impostors[:, None] * softmax  # (B, M): g_imp_n p_nm
    g_t = (g_own * intra).sum() - (pulled * squared).sum()
    g_squared = np.where(unclamped, pulled * -t, dtype(0.0))  # (B, M): dL/dd_nm
    g_intra = g_own * t  # (B,)
    if saved.estimated:
        g_intra = g_intra + (dtype(g_s2) - g_t * t / s2) / dtype(batch - 1)
    g_intra = g_intra.astype(xc.dtype, copy=False)
    g_xc = dtype(2.0) * (g_squared.sum(axis=1, keepdims=True) * xc - g_squared @ means)
    g_means = dtype(-2.0) * (g_squared.T @ xc - g_squared.sum(axis=0)[:, None] * means)
    pull = dtype(2.0) * g_intra[:, None] * residual  # (B, E)
    g_xc += pull
    g_means -= membership @ pull
    g_xc += membership.T @ (g_means / counts[:, None])  # through mu_m = mean of its members
    return g_xc - g_xc.sum(axis=0) / dtype(batch)  # through the centring
