"""Read run files back without running code: tensors, numpy arrays and plain Python only.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a crafted ``checkpoint.pt``
(or a poisoned file in a shared ``train.warm_start_cache``) would run code when a run resumes
or is evaluated. Checkpoints hold tensors, plain containers and numbers, numpy RNG states and
index arrays; PyTorch's restricted unpickler (``weights_only=True``) reads exactly those once
the numpy names an array pickles to are allowed. Anything else is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _numpy_globals() -> list:
    """What a pickled numpy array refers to: the array, its reconstructor (``numpy._core``
    from numpy 2 on) and the dtype classes of booleans, numbers, bytes and strings."""
    core = getattr(np, "_core", None) or np.core
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSU"}
    return [np.ndarray, np.dtype, core.multiarray._reconstruct, *sorted(dtypes, key=str)]


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a file this library wrote, refusing any object that is not a tensor,
    a numpy array or plain Python. A refused file raises ``ValueError`` naming it; a missing,
    truncated or corrupt one raises what ``torch.load`` raises (``FileNotFoundError``,
    ``EOFError``, ``RuntimeError``, ``pickle.UnpicklingError``)."""
    with torch.serialization.safe_globals(_numpy_globals()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            if "weights_only" not in str(error).lower() and "global" not in str(error).lower():
                raise
            raise ValueError(
                f"{str(path)!r} holds objects other than tensors, numpy arrays and "
                "plain Python values, so it was not written by magnetdml and was "
                "not loaded (unpickling it could run code); delete it, or train "
                "the run again"
            ) from None
