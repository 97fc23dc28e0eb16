"""A checkpoint is checked against its run folder's ``config.json``, never trusted.

A ``checkpoint.pt`` copied from another run folder, or a ``config.json`` edited after training,
would otherwise load into a model of another shape (a ``size mismatch`` traceback) or, worse,
load fine and score nonsense: a Magnet checkpoint read as a triplet run keeps a cluster index
that the triplet run never had. Every checkpoint records what trained it (:func:`identity`);
:func:`check_checkpoint` refuses one that disagrees with the config, and
:func:`load_model_state` turns a shape mismatch into one line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .config import Config

#: The config fields a checkpoint's tensors depend on.
IDENTITY = (("loss", "name"), ("model", "backbone"), ("model", "embedding_dim"), ("data", "name"))


def identity(config: Config) -> dict[str, Any]:
    """``{"loss.name": ..., "model.backbone": ..., ...}``: what trained a checkpoint."""
    return {
        f"{section}.{field}": getattr(getattr(config, section), field)
        for section, field in IDENTITY
    }


def _describe(values: dict[str, Any]) -> str:
    return (
        f"a {values.get('loss.name')!r} run (backbone {values.get('model.backbone')}, "
        f"embedding_dim {values.get('model.embedding_dim')}, data "
        f"{values.get('data.name')})"
    )


def check_checkpoint(
    state: Any, config: Config, path: str | Path, uses_index: bool | None = None
) -> None:
    """Raise ``ValueError`` unless ``state`` is a checkpoint of a run of ``config``.

    ``uses_index``: whether ``config``'s loss trains with a cluster index (for checkpoints
    written before they recorded their identity, whose index is the only trace of the loss)."""
    path = str(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(
            f"checkpoint {path!r} does not hold a magnetdml run's state (no model "
            "weights); it was not written by 'magnetdml train': retrain the run "
            "(--overwrite)"
        )
    expected = identity(config)
    saved = state.get("identity")
    if isinstance(saved, dict):
        differ = [key for key, value in expected.items() if key in saved and saved[key] != value]
        if differ:
            raise ValueError(
                f"checkpoint {path!r} was written by {_describe(saved)}, but the "
                f"folder's config.json describes {_describe(expected)} "
                f"({', '.join(differ)} differ); the checkpoint belongs to "
                "another run folder: put back that run's config.json, or retrain "
                "(--overwrite)"
            )
    elif uses_index is not None and (state.get("index") is not None) != uses_index:
        had = "a cluster index" if state.get("index") is not None else "no cluster index"
        raise ValueError(
            f"checkpoint {path!r} holds {had}, but the folder's config.json "
            f"describes a {config.loss.name!r} run, which trains "
            f"{'with' if uses_index else 'without'} one; the checkpoint belongs "
            "to a run of another loss: put back that run's config.json, or "
            "retrain (--overwrite)"
        )


def load_model_state(model: nn.Module, weights: dict, config: Config, path: str | Path) -> None:
    """``model.load_state_dict(weights)``, or one line naming the file and the first
    tensors whose names or shapes differ."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in weights
        and hasattr(weights[k], "shape")
        and tuple(weights[k].shape) != tuple(own[k].shape)
    ]
    if missing or extra or shapes:
        detail = "; ".join(
            part
            for part in (
                f"shapes differ: {', '.join(shapes[:2])}" if shapes else "",
                f"missing {', '.join(missing[:2])}" if missing else "",
                f"unexpected {', '.join(extra[:2])}" if extra else "",
            )
            if part
        )
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit the model config.json "
            f"describes (backbone {config.model.backbone}, embedding_dim "
            f"{config.model.embedding_dim}): {detail} (checkpoint vs model); it "
            "was written by another run: put back that run's config.json, or "
            "retrain (--overwrite)"
        )
    model.load_state_dict(weights)
