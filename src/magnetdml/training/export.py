"""Export a trained run for serving without this library: a ``torch.export`` program + ``.npz``.

``export_run(run, out_dir)`` writes

* ``model.pt2``: the embedding network as a ``torch.export`` program with a dynamic batch
  dimension (``torch.export.load(path).module()`` runs it with torch alone; TorchScript is
  deprecated in torch 2.13). It takes what the inference commands take: image pixels as decoded
  from the files, float ``(N, C, H, W)`` in ``0..255`` (grey or RGB, resized to the run's input
  size), and does the run's preprocessing itself (Omniglot's inversion, the loader's own pixel
  range such as digits' ``0..16``, the per-channel mean and std); feature-vector runs take the
  vectors ``(N, F)`` as they are. Outputs ``(N, E)``;
* ``index.npz``: what kNC needs (paper §3.3) -- ``centroids (C, E)``, ``centroid_labels (C,)``,
  ``lengthscale`` (``sigma^2 / scale``), ``neighbours`` (``L``), ``class_names`` -- and the
  input's description: ``input_shape``, ``input_range`` (255; 0 for feature vectors),
  ``inverted`` (whether the model inverts the grey levels itself).

kNC from these files, in numpy (what the round-trip tests check against ``run.predict`` and
the ``predict`` command)::

    d2 = ((r[:, None] - centroids[None]) ** 2).sum(-1)             # (N, C)
    near = np.argsort(d2, axis=1)[:, :neighbours]                   # L nearest centres
    w = np.exp(-(d2[rows, near] - d2[rows, near[:, :1]]) / (2 * lengthscale))
    score[c] = sum of w over the near centres of class c;  predict = argmax_c score
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic_files import atomic_write

MODEL, INDEX = "model.pt2", "index.npz"


class FromPixels(nn.Module):
    """``model(preprocess(pixels))``: ``pixels`` in ``0..255`` are inverted (``invert``),
    requantised to the loader's range ``round(p * pixel_max / 255)`` when it is not 255, then
    ``x = p * a + b`` (the run's per-channel standardisation)."""

    def __init__(self, model: nn.Module, affine, invert: bool) -> None:
        super().__init__()
        self.model, self.invert = model, bool(invert)
        self.identity = affine is None
        pixel_max, a, b = affine if affine is not None else (255.0, np.ones(1), np.zeros(1))
        self.pixel_max = float(pixel_max)
        self.register_buffer("a", torch.as_tensor(np.asarray(a), dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(np.asarray(b), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.identity:
            if self.invert:
                x = 255.0 - x
            if self.pixel_max != 255.0:
                x = torch.round(x * (self.pixel_max / 255.0))
            x = x * self.a + self.b
        return self.model(x)


def export_run(run, out_dir: str | Path) -> dict[str, Path]:
    """Write ``model.pt2`` and ``index.npz`` of the loaded run ``run`` into ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for {MODEL} and {INDEX}")
    out.mkdir(parents=True, exist_ok=True)
    classifier = run.classifier()
    train = run.splits.train
    affine = train.input_affine() if hasattr(train, "input_affine") else None
    invert = affine is not None and run.inverts_images()
    wrapped = FromPixels(run.model.eval(), affine, invert).to(run.device).eval()
    example = torch.zeros((2, *run.splits.input_shape), device=run.device)
    program = torch.export.export(
        wrapped, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
    )
    atomic_write(out / MODEL, lambda handle: torch.export.save(program, handle))
    arrays = {
        "centroids": np.asarray(classifier.centroids_, dtype=np.float32),
        "centroid_labels": np.asarray(classifier.centroid_labels_),
        "lengthscale": np.float64(classifier.lengthscale_),
        "neighbours": np.int64(classifier.neighbours),
        "class_names": np.asarray(run.class_names),
        "input_shape": np.asarray(run.splits.input_shape, dtype=np.int64),
        "input_range": np.float64(0.0 if affine is None else 255.0),
        "inverted": np.bool_(invert),
    }
    atomic_write(out / INDEX, lambda handle: np.savez(handle, **arrays))
    return {"model": out / MODEL, "index": out / INDEX}
