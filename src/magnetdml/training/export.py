"""Export a trained run for serving without this library: a ``torch.export`` program + ``.npz``.

``export_run(run, out_dir)`` writes

* ``model.pt2``: the embedding network as a ``torch.export`` program with a dynamic batch
  dimension (``torch.export.load(path).module()`` runs it with torch alone; TorchScript is
  deprecated in torch 2.13), inputs ``(N, *input_shape)`` preprocessed as in training,
  outputs ``(N, E)``;
* ``index.npz``: what kNC needs (paper §3.3) -- ``centroids (C, E)``, ``centroid_labels (C,)``,
  ``lengthscale`` (``sigma^2 / scale``), ``neighbours`` (``L``), ``class_names``, and the input
  preprocessing ``input_shape``, ``pixel_max``, ``mean``, ``std`` (``x = (raw / pixel_max -
  mean) / std`` per channel).

kNC from these files, in numpy (what the round-trip test checks against ``run.predict``)::

    d2 = ((r[:, None] - centroids[None]) ** 2).sum(-1)             # (N, C)
    near = np.argsort(d2, axis=1)[:, :neighbours]                   # L nearest centres
    w = np.exp(-(d2[rows, near] - d2[rows, near[:, :1]]) / (2 * lengthscale))
    score[c] = sum of w over the near centres of class c;  predict = argmax_c score
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .run_dir import atomic_write

MODEL, INDEX = "model.pt2", "index.npz"


def export_run(run, out_dir: str | Path) -> dict[str, Path]:
    """Write ``model.pt2`` and ``index.npz`` of the loaded run ``run`` into ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for {MODEL} and "
                         f"{INDEX}")
    out.mkdir(parents=True, exist_ok=True)
    classifier = run.classifier()
    example = torch.zeros((2, *run.splits.input_shape), device=run.device)
    model = run.model.eval()
    program = torch.export.export(model, (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    atomic_write(out / MODEL, lambda handle: torch.export.save(program, handle))
    train = run.splits.train
    arrays = {"centroids": np.asarray(classifier.centroids_, dtype=np.float32),
              "centroid_labels": np.asarray(classifier.centroid_labels_),
              "lengthscale": np.float64(classifier.lengthscale_),
              "neighbours": np.int64(classifier.neighbours),
              "class_names": np.asarray(run.class_names),
              "input_shape": np.asarray(run.splits.input_shape, dtype=np.int64),
              "pixel_max": np.float64(getattr(train, "pixel_max", 1.0)),
              "mean": np.asarray(getattr(train, "_mean", None) or [0.0], dtype=np.float64),
              "std": np.asarray(getattr(train, "_std", None) or [1.0], dtype=np.float64)}
    atomic_write(out / INDEX, lambda handle: np.savez(handle, **arrays))
    return {"model": out / MODEL, "index": out / INDEX}
