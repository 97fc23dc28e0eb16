"""Start a run from another run's weights (``model.init_from``): the paper's pretrained start.

Paper §4.1 fine-tunes a GoogLeNet pretrained on ImageNet (a superset of the target classes) for
a few epochs; here the pretraining is any finished (or partly trained) run of the same backbone
and embedding head, e.g. softmax on all of Omniglot's characters. Only the model's weights are
taken -- backbone and linear head, BatchNorm statistics included -- not its loss (a softmax
classifier is over the pretraining's classes), optimiser or index. The file is read with the
library's safe loader (tensors and numpy arrays only).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .run_dir import CHECKPOINT
from .safe_load import load_state


def load_initial_weights(model: nn.Module, source: str | Path) -> None:
    """Load the model weights of ``source`` (a run folder holding ``checkpoint.pt``, or such a
    file) into ``model`` in place; raise ``ValueError`` naming each tensor that does not fit."""
    path = Path(source)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"model.init_from {str(source)!r} is not a run folder with a "
            f"{CHECKPOINT} nor a checkpoint file; pass the folder of a "
            "run trained with the same backbone (kept with "
            "--keep-checkpoints)"
        )
    if path.stat().st_size == 0:
        raise ValueError(
            f"model.init_from: {str(path)!r} is empty (0 bytes); pass the "
            "checkpoint.pt of a run this library trained, or retrain that run"
        )
    try:
        state = load_state(path)
    except (EOFError, RuntimeError, ValueError, IndexError, OSError) as error:
        raise ValueError(
            f"model.init_from: {str(path)!r} cannot be read as a checkpoint "
            f"({str(error).splitlines()[0]}); pass the checkpoint.pt of a run "
            "this library trained, or retrain that run"
        ) from None
    weights = state.get("model") if isinstance(state, dict) and "model" in state else state
    if not isinstance(weights, dict):
        raise ValueError(
            f"model.init_from {str(path)!r} holds no model weights; pass a run "
            f"folder or the {CHECKPOINT} of one"
        )
    own = model.state_dict()
    problems = [f"{k} missing there" for k in own if k not in weights]
    problems += [
        f"{k} is {tuple(weights[k].shape)} there, {tuple(v.shape)} here"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    problems += [f"{k} not in this model" for k in weights if k not in own]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise ValueError(
            f"model.init_from {str(path)!r} does not fit this model ({shown}): "
            "pretrain with the same model.backbone, model.options, "
            "model.embedding_dim and input size"
        )
    model.load_state_dict(weights)
