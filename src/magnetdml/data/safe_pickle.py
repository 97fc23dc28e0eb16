"""A restricted unpickler for the official CIFAR "python version" archives.

The CIFAR-10/100 batches are Python pickles, and ``pickle.load`` on an untrusted file runs
arbitrary code. These files only need dicts, lists, bytes, ints and numpy arrays, so
:class:`NumpyOnlyUnpickler` resolves exactly the globals that rebuild a numpy array (and the
``latin1`` bytes encoding Python 3 uses for protocol-2 bytes) and refuses every other global
with :class:`pickle.UnpicklingError` naming it. Nothing else can be constructed or called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

try:  # numpy >= 2 moved the internals to numpy._core; old pickles name numpy.core.
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
    if encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding, errors)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    (module, name): obj
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name, obj in (("_reconstruct", _reconstruct),)
}
ALLOWED_GLOBALS.update(
    {
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that can only rebuild builtin containers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR archive only holds numpy "
                "arrays, lists and bytes, so this file is not one (or was tampered with)"
            ) from None


def safe_load(data: bytes, where: str) -> dict[str, Any]:
    """Unpickle one CIFAR batch from ``data``; dict keys are returned as ``str``.

    ``encoding="bytes"`` is what the CIFAR page prescribes for its Python-2 pickles.
    """
    try:
        obj = NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"{where}: {err}") from err
    except (EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise ValueError(
            f"{where} is truncated or not a CIFAR batch ({err!r}); download it again"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{where} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
