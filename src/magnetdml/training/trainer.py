"""The state of one training run and the steps the loop in ``loop.py`` calls in order.

:class:`Trainer` builds the run (data, model, loss, optimiser, index, sampler) and takes one
training step. It is composed of parts, one concept per file, each owning the state it lists:
``objective`` (the model and loss as one module, ``objective.py``), ``upkeep`` (the cluster
index and its refreshes, ``index_upkeep.py``), ``evaluation`` (``eval_step.py``),
``running_sigma2`` (``sigma2.py``) and ``stopping`` (``early_stopping.py``); the checkpoint
gathers their states (``checkpoint_state.py``). The step itself is ``training_step.py``; the
lines a run writes about itself (epoch records, final summary) are ``run_records.py``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._faiss import load_faiss
from ..evaluation import evaluate
from . import checkpoint_state, run_records, training_step
from .config import Config
from .config_io import config_to_dict
from .distributed import Distributed, check_one_process_settings
from .early_stopping import EarlyStopping
from .eval_step import Evaluation
from .index_upkeep import IndexUpkeep, check_training_classes
from .init_weights import load_initial_weights
from .objective import Objective
from .run_dir import RunDir
from .setup import (
    load_splits,
    make_augmenter,
    make_loss,
    make_model,
    make_optimizer,
    make_sampler,
    pin_data_options,
    seed_everything,
)
from .sigma2 import RunningSigma2


class Trainer:
    """Everything a run holds: data, model, loss, optimiser, sampler, history, and its parts
    (``upkeep``, ``evaluation``, ``running_sigma2``, ``stopping``: see the module docstring)."""

    def __init__(self, config: Config, dist: Distributed, *, overwrite: bool = False) -> None:
        check_one_process_settings(config, dist.world_size)
        if _searches(config):
            # faiss is an extra: without it the run stops here in one line, before any folder
            # or training, not at the first index or evaluation (whose time it then skips)
            load_faiss()
        # rank 0 names the default folder: the ranks' clocks may straddle a second
        out = dist.broadcast_object(
            Path(config.out or RunDir.default_path(config.data.name, config.loss.name))
        )
        # an image folder's size, channels and class level go into config.json
        self.config = config = pin_data_options(dataclasses.replace(config, out=str(out)))
        self.dist = dist
        # only rank 0 writes the run folder; its refusal (finished run) stops every rank
        self.run = dist.on_main(
            lambda: RunDir.open(out, config_to_dict(config), overwrite=overwrite)
        )
        try:
            self._build(config, dist)
        except BaseException:  # a refused start frees the folder for the corrected one
            self.close()
            raise

    def close(self) -> None:
        """Free the run folder for other processes (its lock; see ``run_lock``)."""
        if self.run is not None:
            self.run.close()

    def _build(self, config: Config, dist: Distributed) -> None:
        seed_everything(config.train.seed)  # same seed on every rank: the same initial model
        self.splits = load_splits(config)
        self.labels = self.splits.train.labels
        self.model = make_model(config, self.splits.input_shape).to(dist.device)
        if config.model.init_from:  # after the seeded initialisation: the RNG is unchanged
            load_initial_weights(self.model, config.model.init_from)
        self.loss_fn = make_loss(config, self.splits.num_classes).to(dist.device)
        self.objective = Objective(
            self.model, self.loss_fn, amp=config.train.amp, device_type=dist.device.type
        )
        self._ddp: nn.Module | None = None  # wrapped on the first step (after warm start)
        self.uses_index = config.loss.spec().uses_index
        #: set by an ``on_epoch`` hook to end training after this epoch (a search trial
        #: whose validation error has stopped improving)
        self.stop_requested = False
        self.stopping = EarlyStopping(
            config.train.patience,
            config.train.epochs,
            "retrieval_error"
            if config.data.class_disjoint_val()
            else config.loss.spec().own_metric,
        )
        self.stopping.check(self.splits.val is not None)
        check_training_classes(config, self.labels)
        self.optimizer = make_optimizer(config, self.model, self.loss_fn)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, config.train.lr_decay
        )
        self.augmenter, self.augment_generator = make_augmenter(config, dist)
        self.train_augmenter = self.augmenter if config.data.augment else None
        self.upkeep = IndexUpkeep(
            config, self.model, self.splits.train, dist, uses_index=self.uses_index
        )
        self.evaluation = Evaluation(config, dist, self.augmenter, self.loss_fn)
        self.running_sigma2 = RunningSigma2(config.train.variance_momentum)
        self.sampler = None
        self.epoch = self.iteration = 0
        self.loss_curve: list[tuple[int, float]] = []
        # train_seconds: the epochs, refreshes included; initial_index_seconds: the first fit
        # (the refresh counters are the upkeep's: see timing_summary)
        self.timing = {"train_seconds": 0.0, "images": 0, "initial_index_seconds": 0.0}

    @property
    def index(self):
        """The cluster index (``None`` for losses trained without one)."""
        return self.upkeep.index

    @property
    def sigma2(self) -> float | None:
        """The running ``sigma^2`` of the batch variances (cluster losses; else ``None``)."""
        return self.running_sigma2.value

    def timing_summary(self) -> dict:
        """Seconds and counts of the run, with the index refreshes' (``run_records``)."""
        return run_records.timing_summary(self)

    def build_initial_index(self) -> None:
        """Fit the first cluster index (cluster losses) and make the batch sampler."""
        started = time.perf_counter()
        if self.uses_index:
            self.refresh_index()
        self.timing["initial_index_seconds"] = time.perf_counter() - started
        self.sampler = make_sampler(
            self.config,
            self.labels,
            self.index,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )

    # ------------------------------------------------------------ index upkeep
    def refresh_due(self) -> bool:
        return self.upkeep.due(self.iteration)

    def refresh_index(self, *, final: bool = False) -> None:
        """Refresh the cluster index now; ``final``: the one after the last epoch, which the
        run keeps and evaluates, always from float32 embeddings."""
        self.upkeep.refresh(self.iteration, self.sampler, precision="float32" if final else None)

    def apply_pending_refresh(self, *, wait: bool = False) -> None:
        self.upkeep.apply_pending_refresh(self.sampler, self.iteration, wait=wait)

    def train_embeddings(self) -> np.ndarray:
        """Embeddings of the whole training set at the current iteration (computed once)."""
        return self.upkeep.train_embeddings(self.iteration)

    # -------------------------------------------------------------- evaluation
    def embed(self, dataset) -> np.ndarray:
        """Embeddings of a test-like split (with test-time averaging when configured)."""
        return self.evaluation.embed(self.model, dataset)

    def knc(self, reference: np.ndarray):
        """kNC of the training embeddings ``reference``: the run's index (a refreshed copy
        when it clusters older embeddings), ``sigma^2`` and temperature (``fit_knc``)."""
        return self.evaluation.knc(
            reference,
            self.labels,
            index=self.index,
            current=self.upkeep.index_current(self.iteration),
            sigma2=self.sigma2,
        )

    def evaluate(
        self, dataset=None, *, queries: np.ndarray | None = None, full: bool = False
    ) -> dict:
        """kNC and soft-kNN errors of ``dataset`` (the test split by default) against the
        training set's embeddings (paper §3.3); ``full`` adds every metric of ``evaluate``."""
        dataset = dataset if dataset is not None else self.splits.test
        queries = self.embed(dataset) if queries is None else queries  # sharded passes
        reference = self.train_embeddings()
        return self.evaluation.scores(
            queries, dataset.labels, reference, self.labels, lambda: self.knc(reference), full=full
        )

    def finish(self, write: bool = True) -> dict:
        """Full evaluation of the final model (``run_records.final_summary``), written to
        ``metrics.json`` (with ``write``), the file that marks the run finished."""
        self.apply_pending_refresh(wait=True)
        summary = run_records.final_summary(self)
        if self.run is not None and write:
            self.run.write_summary(summary)
        return summary

    # ---------------------------------------------------------- early stopping
    def validation_scores(self) -> dict:
        """The validation split's scores: kNC and soft-kNN errors against the training
        embeddings; or, on a class-disjoint split (``data.val_classes``, ``val_folds``),
        retrieval among its own examples (Musgrave et al. 2020): MAP@R, P@1 and
        ``retrieval_error = 1 - MAP@R``."""
        if not self.config.data.class_disjoint_val():
            return self.evaluate(self.splits.val)
        val = self.splits.val
        queries = self.embed(val)
        scores = self.dist.broadcast_object(
            self.dist.on_main(
                lambda: evaluate(queries, val.labels, metrics=["map_at_r", "precision_at_1"])
            )
        )
        return {**scores, "retrieval_error": 1.0 - scores["map_at_r"]}

    def track_validation(self, record: dict) -> None:
        """Score the validation split into ``record``; remember this epoch if it is the best."""
        scores = self.validation_scores()
        record.update({f"val_{k}": v for k, v in scores.items()})
        self.stopping.update(self.epoch, scores, lambda: checkpoint_state.weights_state(self))

    def patience_exhausted(self) -> bool:
        return self.stop_requested or self.stopping.exhausted(self.epoch)

    def restore_best(self) -> bool:
        """Put epoch ``e*``'s model, loss, ``sigma^2`` and index back for the final scores;
        return whether there was anything to restore (``e*`` before the last epoch)."""
        best = self.stopping.best
        if best is None or best["epoch"] == self.epoch:
            return False
        self.apply_pending_refresh(wait=True)
        checkpoint_state.restore_weights(self, best)
        return True

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """The run's state (a collective under torchrun): see ``checkpoint_state``."""
        return checkpoint_state.trainer_state(self)

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # on every rank: it gathers
        if self.run is not None:
            self.run.save_checkpoint(state)

    def start_from_checkpoint(self) -> bool:
        """Resume from the run folder's checkpoint, if it has one; return whether it did."""
        resumed = self.dist.broadcast_object(bool(self.run and self.run.has_checkpoint()))
        if resumed:
            checkpoint_state.restore_trainer(
                self, self.dist.broadcast_object(self.run.load_checkpoint() if self.run else None)
            )
        return resumed

    # ------------------------------------------------------------------- one step
    def step(self, batch: list[int]) -> float:
        """Forward the batch, compute the loss, update the weights and the sampler's cache
        (``training_step.take_step``); returns the mean loss over every rank's batch."""
        return training_step.take_step(self, batch)

    @property
    def net(self) -> nn.Module:
        """The model and loss as one module; under torchrun, wrapped in DDP. Wrapped lazily:
        the warm start trains the model under its own DDP wrapper first."""
        if self._ddp is None:
            self._ddp = (
                DistributedDataParallel(self.objective)
                if self.dist.world_size > 1
                else self.objective
            )
        return self._ddp

    def epoch_record(self, mean_loss: float) -> dict:
        """The per-epoch line of ``metrics.jsonl`` (``run_records.epoch_record``)."""
        return run_records.epoch_record(self, mean_loss)

    def log(self, record: dict) -> None:
        if self.run is not None:
            self.run.append_history(record)


def _searches(config: Config) -> bool:
    """Whether a run clusters or searches neighbours (faiss): a cluster loss's index, an
    evaluation (every epoch's, the final one) or early stopping's validation score."""
    return (
        config.loss.spec().uses_index
        or config.eval.final
        or config.eval.every > 0
        or config.train.patience > 0
    )
