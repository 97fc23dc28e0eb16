"""Reuse a warm start another run has already trained (``train.warm_start_cache``).

The warm start (``warm_start.py``) is a deterministic function of what goes into it: the
network's architecture and initial weights, the random states, the training split and the
warm-start settings. The runs of an experiment that differ only in their loss (Magnet, triplet,
contrastive, lifted structure, ...) feed it the same inputs, yet each trained it anew: one
epoch over the training set, about a third of a run of the ``classification`` experiment.

With a cache folder, the first such run stores its result under a hash of those inputs and the
others load it: the weights *and* the random states after the warm start, so a run is
bit-for-bit the same whether it trained its warm start or loaded it
(``tests/training/test_warm_start_cache.py``).
The softmax baseline's warm start trains the loss's own classifier (drawn from the torch random
state before the warm start): its weights enter the hash and the file, so it hashes
differently and stores and loads its classifier with the network.

Files are written atomically; a file that cannot be read is treated as missing and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from .atomic_files import atomic_write
from .safe_load import load_state
from .setup import restore_rng_state, rng_state

#: Bump when the warm start's computation changes, so that old files are never reused.
#: 2: softmax trains its own classifier in the warm start and keeps it.
FORMAT = 2
#: Training examples whose pixels enter the hash (with every label): catches a changed data
#: folder without reading all of it.
DATA_SAMPLE = 64


class WarmStartCache:
    """The cache file of one warm start: ``<folder>/<sha256 of its inputs>.pt``."""

    def __init__(self, folder: str | Path, trainer, epochs: int, batch_size: int) -> None:
        folder = Path(folder).expanduser()
        try:  # now, not after an epoch of warm start that could then not be stored
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(
                f"train.warm_start_cache must be a folder this process can write; "
                f"{str(folder)!r} is not ({error.strerror}): pass another folder, "
                "or '' to train the warm start without storing it"
            ) from error
        self.trainer = trainer
        self.key = _key(trainer, epochs, batch_size)
        self.path = folder / f"warm-start-{self.key[:32]}.pt"

    def restore(self) -> bool:
        """Load the stored warm start into the trainer; False when there is none (yet)."""
        try:
            state = load_state(self.path)
        except (FileNotFoundError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError):
            # a refused file (ValueError: not only tensors and arrays) is a miss like a torn
            # one: the warm start is trained and the file rewritten
            return False
        if not isinstance(state, dict) or state.get("key") != self.key:
            return False
        self.trainer.model.load_state_dict(state["model"])
        self.trainer.loss_fn.load_state_dict(state["loss"])
        restore_rng_state(state["rng"])
        if state["augment_rng"] is not None:
            self.trainer.augment_generator.set_state(state["augment_rng"])
        return True

    def store(self) -> None:
        """Write the trainer's warm-started weights and random states (atomically)."""
        state = {
            "key": self.key,
            "model": self.trainer.model.state_dict(),
            "loss": self.trainer.loss_fn.state_dict(),
            "rng": rng_state(),
            "augment_rng": _augment_state(self.trainer),
        }
        atomic_write(self.path, lambda handle: torch.save(state, handle))


def _augment_state(trainer) -> torch.Tensor | None:
    generator = getattr(trainer, "augment_generator", None)
    return generator.get_state() if generator is not None else None


def _key(trainer, epochs: int, batch_size: int) -> str:
    """sha256 over everything the warm start reads (see the module docstring)."""
    config, model, train = trainer.config, trainer.model, trainer.splits.train
    digest = hashlib.sha256()
    settings = {
        "format": FORMAT,
        "torch": torch.__version__,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": config.train.seed,
        "lr": config.train.warm_start_rate(),
        "momentum": config.train.momentum,
        "device": str(trainer.dist.device),
        "world_size": trainer.dist.world_size,
        "data": repr(config.data),
        "num_classes": trainer.splits.num_classes,
        # the warm start trains head(features(x)) -- never the output normalisation,
        # so runs that differ only in model.normalize share one
        "architecture": repr((model.backbone, model.head)),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    weights = {
        **model.state_dict(),
        **{f"loss.{k}": v for k, v in trainer.loss_fn.state_dict().items()},
    }
    for name, tensor in weights.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    state = rng_state()
    digest.update(state["torch"].numpy().tobytes())
    digest.update(repr(state["python"]).encode())
    kind, keys, position, has_gauss, cached = state["numpy"]
    digest.update(f"{kind}{position}{has_gauss}{cached}".encode() + keys.tobytes())
    for cuda_state in state.get("cuda", []):
        digest.update(cuda_state.numpy().tobytes())
    augment = _augment_state(trainer)
    if augment is not None:
        digest.update(augment.cpu().numpy().tobytes())
    digest.update(np.ascontiguousarray(train.labels).tobytes())
    rows = np.linspace(0, len(train) - 1, num=min(DATA_SAMPLE, len(train))).astype(np.int64)
    digest.update(train.get_batch(rows)[0].cpu().numpy().tobytes())
    return digest.hexdigest()
