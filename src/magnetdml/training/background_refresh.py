"""A pipelined index refresh: embed a snapshot of the weights on another thread while training
goes on, and swap the new index in a fixed number of iterations later.

The paper pauses training for every refresh (§3.2), because an index built from embeddings
computed at different stages of training misjudges the neighbourhoods. A snapshot keeps that
property -- every embedding comes from the same weights -- while the forward pass over the
training set runs on a spare core (or GPU stream) instead of stalling the training steps. The
new index takes effect exactly ``lag`` iterations after the snapshot (the loop waits if it is
not ready yet), so a run is deterministic whatever the machine's speed, and a checkpoint that
holds the snapshot resumes to the same result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class BackgroundRefresh:
    """``compute(snapshot) -> result`` running on a daemon thread, due at ``apply_at``."""

    def __init__(
        self,
        snapshot: dict[str, Any],
        snapshot_iteration: int,
        apply_at: int,
        compute: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.snapshot = snapshot
        self.snapshot_iteration = snapshot_iteration
        self.apply_at = apply_at
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(compute,), daemon=True, name="magnetdml-refresh"
        )
        self._thread.start()

    def _run(self, compute: Callable[[dict[str, Any]], Any]) -> None:
        try:
            self._result = compute(self.snapshot)
        except BaseException as error:  # re-raised in the training thread by result()
            self._error = error

    def result(self) -> Any:
        """Wait for the computation and return its result (or raise its error)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to redo this refresh identically after a restart."""
        return {
            "snapshot": self.snapshot,
            "snapshot_iteration": self.snapshot_iteration,
            "apply_at": self.apply_at,
        }
