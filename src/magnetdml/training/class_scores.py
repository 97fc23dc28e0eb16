"""A loss's own classifier, scored: softmax's linear layer, or the proxies / class weights of a
pytorch-metric-learning loss (ProxyAnchor, NormalizedSoftmax, ArcFace, SoftTriple...).

Losses whose spec declares ``own_scores == "classifier"`` are scored by kNN like every loss,
and separately by their own class scores, as their papers report them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: The metrics of a loss's own class scores.
CLASSIFIER_METRICS = ("classifier_error", "classifier_error_at_5")


@torch.no_grad()
def classifier_metrics(
    loss_fn: nn.Module, embeddings: np.ndarray, labels: np.ndarray, *, chunk: int = 8192
) -> dict[str, float]:
    """Top-1 and top-5 error of ``loss_fn.class_scores`` over ``embeddings`` ``(N, E)``:
    ``error@k = mean_n [C(n) not among the k highest scores of r_n]``."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return {name: float("nan") for name in CLASSIFIER_METRICS}
    parameter = next(loss_fn.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = loss_fn.training
    loss_fn.eval()
    top1, top5 = [], []
    try:
        for start in range(0, len(labels), chunk):
            x = torch.as_tensor(np.asarray(embeddings[start : start + chunk]), device=device)
            scores = loss_fn.class_scores(x.float())  # (n, C)
            k = min(5, scores.shape[1])
            best = scores.topk(k, dim=1).indices.cpu().numpy()  # (n, k)
            y = labels[start : start + chunk, None]
            top1.append(best[:, 0] != y[:, 0])
            top5.append(~(best == y).any(axis=1))
    finally:
        loss_fn.train(was_training)
    return {
        "classifier_error": float(np.concatenate(top1).mean()),
        "classifier_error_at_5": float(np.concatenate(top5).mean()),
    }
