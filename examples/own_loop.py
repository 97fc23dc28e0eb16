"""Magnet Loss in a plain PyTorch loop: your model, your optimiser, your data.

``md.MagnetTraining`` keeps the cluster index, the neighbourhood sampler, the loss cache and
sigma^2; the loop only embeds, steps and refreshes. Runs in about ten seconds on one CPU
core (scikit-learn's bundled digits, a small MLP) and prints the kNC test error:

    python examples/own_loop.py
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import magnetdml as md


def main(epochs: int = 15, steps_per_epoch: int = 40, seed: int = 0) -> float:
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # (1797, 64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=seed
    )
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    magnet = md.MagnetTraining(
        y_train,
        clusters_per_class=2,
        clusters_per_batch=8,
        examples_per_cluster=4,
        alpha=1.0,
        scale=2.0,
        seed=seed,
    )
    magnet.refresh(md.embed(model, x_train))  # the first cluster index
    for _ in range(epochs):
        model.train()
        for batch in magnet.batches(steps_per_epoch):  # M x D training indices
            loss = magnet.loss(model(x_train[batch]), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        magnet.refresh(md.embed(model, x_train))  # re-cluster; the sampler follows
    predicted = magnet.classifier().predict(md.embed(model, x_test))
    error = float(np.mean(predicted != y_test))
    print(
        f"kNC test error after {epochs} epochs: {100 * error:.2f}% "
        f"(sigma^2 {magnet.sigma2:.3g}, {magnet.index.n_clusters_} clusters)"
    )
    return error


if __name__ == "__main__":
    main()
