"""A search's Optuna study: its storage, its sampler, and the processes that fill it.

The study lives in an Optuna RDB storage (SQLite ``study.db`` in the search folder unless a URL
is given) under :func:`study_name`. Each worker process (:func:`work`) creates trials one at a
time, under a file lock so that workers counting at once do not overshoot the budget, until
``trials`` have finished or are running. A trial left RUNNING by a killed process is retried
with the same values and its run folder (which resumes from its checkpoint): by the search
folder's next invocation at once (:func:`retry_unfinished`; it owns the folder), or, on a
shared storage, by Optuna's heartbeat once the process has been silent for
:data:`GRACE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .trial import SCALED_NEIGHBOURS, TUNER_RULE
from .trial import objective as _objective

STUDY_DB = "study.db"
LOCK, TRIAL_LOCK = ".search.lock", ".trial.lock"
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120
#: One storage per URL and process: connecting checks the schema (~0.7 s with SQLite).
_STORAGES: dict = {}


def study_name(out: Path, settings: dict) -> str:
    """The study's name in its storage: the search folder's name and a digest of what makes
    the search (base config less machine fields, space, seed, pruner), so that machines running
    the same command share one study and different searches in one storage never mix."""
    import hashlib

    from ..training.run_identity import run_identity

    identity = {**settings, "base": run_identity(json.loads(json.dumps(settings["base"])))}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{out.name}-{digest.hexdigest()[:10]}"


def open_study(url: str, name: str, task: dict, worker: int = 0):
    """The study at ``url`` (created on first use), with a TPE sampler seeded by the search's
    ``seed``, the number of trials the study holds and the ``worker``: a resumed or extended
    search draws what an uninterrupted one would (one worker), and workers draw apart."""
    seed, epochs = task["seed"], task["base"]["train"]["epochs"]
    startup, warmup = startup_trials(task["trials"]), warmup_passes(task["base"]["train"])
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    if url not in _STORAGES:
        create_sqlite_atomically(url, kwargs)
    for attempt in range(5):  # processes that start together race to create the tables
        if url in _STORAGES:
            break
        try:
            _STORAGES[url] = RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=3, inherit_intermediate_values=True
                ),
            )
        except Exception as error:  # sqlalchemy's: a table or row made twice
            if not type(error).__module__.startswith("sqlalchemy"):
                raise
            if attempt == 4:
                raise ValueError(_storage_problem(url, error)) from error
            time.sleep(1 + attempt)
    storage = _STORAGES[url]
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=startup, n_warmup_steps=warmup
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=warmup, max_resource=max(epochs, warmup)
        ),
        "none": optuna.pruners.NopPruner,
    }
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="minimize",
        pruner=pruners[task["pruner"]](),
        load_if_exists=True,
    )
    if TUNER_RULE not in study.user_attrs and not study.trials:  # a new study: today's rule
        study.set_user_attr(TUNER_RULE, SCALED_NEIGHBOURS)
    state = np.random.SeedSequence([seed, len(study.trials), worker]).generate_state(1)[0]
    study.sampler = optuna.samplers.TPESampler(seed=int(state), n_startup_trials=startup)
    return study


def create_sqlite_atomically(url: str, engine_kwargs: dict) -> None:
    """Create a new SQLite study file whole, or not at all.

    Optuna creates its schema one statement at a time, the unique index on the study names
    after their table: a search killed (or interrupted) between the two left a file without
    that index, where every later open of the study inserted the study again, until the
    name matched two rows and the search could not resume. The schema is built in a file of
    this process's own and linked into place, which fails harmlessly if another process got
    there first. Other URLs (a server's database) are left to Optuna."""
    from optuna.storages import RDBStorage
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:  # SQLAlchemy's own parser: query options (?timeout=...) are not part of the path
        parsed = make_url(url)
    except ArgumentError as error:
        raise ValueError(_storage_problem(url, error)) from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if path.exists():
        return
    if not path.parent.is_dir():
        raise ValueError(
            f"study storage {url!r}: the folder {str(path.parent)!r} does not exist; "
            "create it first or give a path in an existing folder"
        )
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        partial_url = parsed.set(database=str(partial)).render_as_string(hide_password=False)
        RDBStorage(partial_url, engine_kwargs=engine_kwargs).engine.dispose()
        with contextlib.suppress(FileExistsError):
            os.link(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _storage_problem(url: str, error: Exception) -> str:
    """One line for a storage that cannot be opened: the URL, the driver's reason, the fix."""
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    return (
        f"cannot open the study storage {url!r} ({reason}); give an SQLAlchemy URL of a "
        "database you can reach, e.g. sqlite:///runs/study.db or "
        "postgresql://user:password@host/database"
    )


def startup_trials(trials: int) -> int:
    """TPE's random first trials, which the median pruner also lets finish: its median needs
    whole curves, and a pruned random draw tells TPE little."""
    return max(2, min(10, trials // 3))


def warmup_passes(train: dict) -> int:
    """Passes a trial trains before any pruner may stop it: ``train.patience`` (the passes a
    run may go without improving before it stops), else a quarter of ``train.epochs``.

    Judging trials after one pass, as this project first did, cut 6 of Magnet's 8 fine-grained
    Omniglot trials after their first pass: a loss whose early passes are slow lost most of
    its tuning budget (on digits, ``search_pruners.py``, that setting cost Magnet's search
    validation error and softmax's none)."""
    return max(1, int(train.get("patience") or 0) or int(train["epochs"]) // 4)


def finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def retry_unfinished(study) -> None:
    """Fail the trials a killed search left RUNNING and queue each again with its values and
    its run folder (which resumes from its checkpoint)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs=dict(trial.user_attrs), skip_if_exists=False)


def work(url: str, task: dict, worker: int, log: Callable[[str], None] | None) -> None:
    """One process's share: trials until ``trials`` have finished (or are being trained).
    Module level: search workers run it in other processes."""

    from ..training.setup import shared_splits

    log = log or (lambda _message: None)
    out, trials = Path(task["out"]), task["trials"]
    with shared_splits():  # the trials of this process load the data once
        _work_on(url, task, worker, log, out, trials)


def _work_on(
    url: str, task: dict, worker: int, log: Callable[[str], None], out: Path, trials: int
) -> None:
    from optuna.trial import TrialState

    while True:
        lock = _TrialLock(out / TRIAL_LOCK)  # held until the new trial is RUNNING: workers
        try:  # that count at once would overshoot
            study = open_study(url, task["study"], task, worker)
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if finished_count(study) + running >= trials:
                return

            def objective(trial, lock=lock):
                lock.release()
                return _objective(trial, task, log)

            study.optimize(objective, n_trials=1, catch=())
        finally:
            lock.release()


class _TrialLock:
    """An exclusive ``flock`` on ``path``, taken now (waiting for it), released once."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def release(self) -> None:
        if not self.handle.closed:
            self.handle.close()


@contextlib.contextmanager
def folder_lock(out: Path, blocking: bool = False):
    """An exclusive lock on the search folder: one invocation at a time (``blocking``: wait
    for it, as the invocation's own workers do around creating a trial)."""
    handle = open(out / LOCK, "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ValueError(
                f"another search is running in {str(out)!r}; wait for it, or "
                "add --jobs to it instead of starting a second one"
            ) from None
        yield
    finally:
        handle.close()
