"""Checkpoint state: what a run saves after every epoch and how a resume restores it.

The checkpoint holds everything a resumed run needs to continue bit for bit: model, loss,
optimiser and scheduler, the cluster index, the sampler's example stream, the RNG states and
any background refresh still pending (redone from the same weight snapshot). Under torchrun
every rank's sampler and RNG state is gathered into ``ranks``.

:class:`CheckpointState` is a part of :class:`~magnetdml.training.trainer.Trainer`: its
methods read and write the trainer's attributes.
"""

from __future__ import annotations

from .checkpoint_check import check_checkpoint, identity, load_model_state
from .setup import make_sampler, restore_rng_state, rng_state


class CheckpointState:
    """The trainer's ``state_dict``, saving it, and resuming from it."""

    def start_from_checkpoint(self) -> bool:
        """Resume from the run folder's checkpoint, if it has one; return whether it did."""
        resumed = self.dist.broadcast_object(bool(self.run and self.run.has_checkpoint()))
        if resumed:
            self._restore(self.dist.broadcast_object(
                self.run.load_checkpoint() if self.run else None))
        return resumed

    def state_dict(self) -> dict:
        """The run's state (a collective under torchrun: the per-rank streams are gathered).
        Top-level sampler/RNG entries are rank 0's; ``ranks`` holds every rank's."""
        own = self._rank_state()
        state = {"identity": identity(self.config), "epoch": self.epoch,
                "iteration": self.iteration, "variance": self.variance,
                "model": self.model.state_dict(), "loss": self.loss_fn.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "index": self.index.state_dict() if self.index is not None else None,
                "index_iteration": self.index_iteration,
                "loss_curve": self.loss_curve, "timing": self.timing,
                "schedule_reference": self.schedule.reference, "best": self.best,
                "pending_refresh": (self.pending_refresh.state_dict()
                                    if self.pending_refresh is not None else None), **own}
        if self.dist.world_size > 1:
            state["ranks"] = self.dist.all_gather_object(own)
        return state

    def _rank_state(self) -> dict:
        """What differs between ranks: the sampler's example stream and the RNG states."""
        return {"sampler": self.sampler.state_dict(), "rng": rng_state(),
                "augment_rng": (self.augment_generator.get_state()
                                if self.augmenter is not None else None)}

    def save_checkpoint(self) -> None:
        state = self.state_dict()   # on every rank: it gathers
        if self.run is not None:
            self.run.save_checkpoint(state)

    def _restore(self, state: dict) -> None:
        path = self.run.checkpoint_path if self.run is not None else self.config.out
        check_checkpoint(state, self.config, path, uses_index=self.uses_index)
        saved_world = len(state.get("ranks", [None]))
        if saved_world != self.dist.world_size:
            raise ValueError(f"the checkpoint in {self.config.out!r} was written by "
                             f"{saved_world} process(es) but this run has "
                             f"{self.dist.world_size}; resume with the same --nproc-per-node "
                             "(the samplers' random streams are per process)")
        own = state["ranks"][self.dist.rank] if "ranks" in state else state
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.index_iteration = state.get("index_iteration", state["iteration"])
        self.variance = state["variance"]
        load_model_state(self.model, state["model"], self.config, path)
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.index is not None:
            self.index.load_state_dict(state["index"])
        self.sampler = make_sampler(self.config, self.labels, self.index,
                                    rank=self.dist.rank, world_size=self.dist.world_size)
        self.sampler.load_state_dict(own["sampler"])
        self.loss_curve = [tuple(p) for p in state["loss_curve"]]
        self.timing = state["timing"]
        self.best = state.get("best")
        self.schedule.refreshed(state["schedule_reference"])
        pending = state.get("pending_refresh")
        if pending is not None:   # redo it from the same snapshot: the same index results
            self._start_background_refresh(pending["snapshot"], pending["snapshot_iteration"],
                                           pending["apply_at"])
        restore_rng_state(own["rng"])
        if self.augmenter is not None:
            self.augment_generator.set_state(own["augment_rng"])
        if self.run is not None:
            self.run.truncate_history(self.epoch)
