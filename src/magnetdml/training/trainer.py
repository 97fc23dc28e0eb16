"""The state of one training run and the steps the loop in ``loop.py`` calls in order.

:class:`Trainer` builds the run (data, model, loss, optimiser, index, sampler) and takes one
training step. It is composed of parts, one concept per file, each owning the state it lists:
``objective`` (the model and loss as one module, ``objective.py``), ``upkeep`` (the cluster
index and its refreshes, ``index_upkeep.py``), ``evaluation`` (``eval_step.py``),
``running_sigma2`` (``sigma2.py``) and ``stopping`` (``early_stopping.py``); the checkpoint
gathers their states (``checkpoint_state.py``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.augment import RandomRescaleCrop
from ..evaluation import evaluate
from . import checkpoint_state
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
        self.augmenter, self.augment_generator = self._make_augmenter()
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
        """Seconds and counts of the run, with the index refreshes', in the summary's order."""
        first = {
            "train_seconds": self.timing["train_seconds"],
            "refresh_seconds": self.upkeep.refresh_seconds,
            "refreshes": self.upkeep.refreshes,
        }
        return {**first, **{k: v for k, v in self.timing.items() if k not in first}}

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

    def refresh_index(self) -> None:
        self.upkeep.refresh(self.iteration, self.sampler)

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
            current=self.upkeep.index_iteration == self.iteration,
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
        """Full evaluation of the final model (and of unseen classes, when the dataset has a
        class-disjoint split); written to ``metrics.json`` (with ``write``), the file that
        marks the run finished."""
        self.apply_pending_refresh(wait=True)
        summary = {
            "dataset": self.config.data.name,
            "loss": self.config.loss.name,
            "backbone": self.config.model.backbone,
            "run_dir": self.config.out,
            "epochs": self.epoch,
            "iterations": self.iteration,
            "sigma2": self.sigma2,
            **self.stopping.summary(self.epoch),
        }
        if self.config.eval.final:  # off: a search trial, scored on its validation split
            final = self.evaluation.final_test_embeddings = self.embed(self.splits.test)
            summary.update(self.evaluate(queries=final, full=True))
        if self.splits.unseen is not None and self.config.eval.final:
            summary["unseen"] = self.evaluation.unseen(self.model, self.splits.unseen)
        if self.index is not None:
            summary["clusters"] = int(self.index.n_clusters_)
        timing = self.timing_summary()
        seconds = timing["train_seconds"]
        summary.update(timing)
        summary["images_per_second"] = timing["images"] / seconds if seconds else None
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
        """Forward the batch, compute the loss, update the weights and the sampler's cache."""
        indices = np.asarray(batch, dtype=np.int64)
        x, y = self.splits.train.get_batch(indices)
        x, y = x.to(self.dist.device, non_blocking=True), y.to(self.dist.device)
        if self.train_augmenter is not None:
            x = self.train_augmenter(x)
        if self.uses_index:
            clusters = torch.as_tensor(self.index.assignments_[indices], device=y.device)
            per_example = self.net(x, y, clusters)  # (B,)
            loss = per_example.mean()
        else:
            loss = self.net(x, y)
        if not torch.isfinite(loss.detach()):  # before the update: the weights stay usable
            raise ValueError(
                f"training diverged at iteration {self.iteration + 1} (epoch {self.epoch + 1}): "
                f"the loss is {float(loss.detach())}; lower train.lr (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}). The checkpoint holds the last "
                "finished epoch: rerun with a lower --train.lr and --overwrite"
            )
        value = (
            self._share_losses(indices, per_example.detach(), self.loss_fn.last_variance)
            if self.uses_index
            else None
        )
        # Under DDP, backward all-reduces (averages) the gradients: the update of the mean of
        # the ranks' neighbourhood losses, as one process accumulating them would make.
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        if value is None:
            value = self.dist.all_reduce_mean(float(loss.detach()))
        self.loss_curve.append((self.iteration, value))
        self.timing["images"] += len(indices) * self.dist.world_size
        return value

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

    def _share_losses(self, indices: np.ndarray, losses: torch.Tensor, s2: torch.Tensor) -> float:
        """Every rank caches every rank's losses, so the samplers stay identical; returns the
        mean loss over all ranks (every neighbourhood has the same size)."""
        packed = torch.stack(
            [
                torch.as_tensor(indices, dtype=torch.float64),
                losses.double().cpu(),
                s2.double().cpu().expand(len(indices)),
            ],
            dim=1,
        )
        packed = self.dist.gather_rows(packed.to(self.dist.device)).cpu().numpy()
        self.sampler.update_losses(packed[:, 0].astype(np.int64), packed[:, 1])
        self.running_sigma2.update(float(packed[:, 2].mean()))
        return float(packed[:, 1].mean())

    def epoch_record(self, mean_loss: float) -> dict:
        """The per-epoch line of ``metrics.jsonl`` (test errors are added by the loop)."""
        record = {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "loss": mean_loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "sigma2": self.sigma2,
            "refreshes": self.upkeep.refreshes,
            "train_seconds": round(self.timing["train_seconds"], 3),
        }
        if self.index is not None:
            per_class = np.asarray(self.index.clusters_per_class_)
            record["clusters_per_class"] = {
                "mean": float(per_class.mean()),
                "min": int(per_class.min()),
                "max": int(per_class.max()),
            }
            record["drift"] = self.upkeep.schedule.last_drift
        if self.sampler is not None and hasattr(self.sampler, "stats"):
            # scalars only: per-cluster arrays would make every line as long as the index
            record["sampler"] = {
                k: v for k, v in self.sampler.stats().items() if isinstance(v, (int, float))
            }
            self.sampler.reset_stats()
        return record

    def log(self, record: dict) -> None:
        if self.run is not None:
            self.run.append_history(record)

    def _make_augmenter(self):
        """Paper §4 augmentation as ``x -> x'`` with this rank's own seeded generator."""
        if not (self.config.data.augment or self.config.eval.test_time_augment):
            return None, None
        augment = RandomRescaleCrop(max_scale=self.config.data.max_scale)
        generator = torch.Generator(device=self.dist.device)
        generator.manual_seed(self.config.train.seed + 1000 * self.dist.rank)
        return (lambda x: augment(x, generator)), generator
