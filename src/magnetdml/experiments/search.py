"""Hyperparameter search with Optuna, scored on a validation split (paper App. B, with TPE).

The paper tunes, by random search on validation error, the learning rate, its annealing and
the loss's own parameters (which ones, over which ranges: :mod:`.search_space`). Here the
search is Optuna's seeded TPE sampler (random for its first trials, then model-based), and
every trial trains to the full budget (``train.epochs``, or fewer with ``train.patience``)
unless the pruner stops it: after every pass the trial reports its validation error (the
loss's own protocol: kNC for cluster losses, soft kNN otherwise, ``1 - MAP@R`` on a
class-disjoint split) and the pruner (``median`` or ``hyperband``; ``none``) stops trials
that trail the others at the same pass. A trial's value is the validation error of the model
it ends with (the best pass with ``train.patience``, else the last). A trial that diverges is
pruned; any other error stops the search.

Each trial is a :func:`magnetdml.training.train` run in ``out/trial_NNN`` with no plots and no
test-split scoring between passes: only what the tuner needs. The study lives in
``out/study.db`` (SQLite; ``storage`` takes any Optuna storage URL, e.g. PostgreSQL, for
several machines on one study). ``jobs`` worker processes share it; a killed search resumes
where it stopped: its unfinished trials are retried with the same values from their
checkpoints (by this folder's next search at once; on a shared ``storage``, by Optuna's
heartbeat once the dead process has been silent for :data:`GRACE_SECONDS`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .._validation import check_choice, check_int
from ..training import Config, apply_overrides, config_to_dict, train
from ..training.parallel import in_workers, with_threads
from ..training.run_dir import CHECKPOINT, HISTORY, SUMMARY, write_json
from .evaluate_run import evaluate_run  # noqa: F401  (its historical home)
from .run_stage import DISPOSABLE
from .search_space import SearchSpace

PRUNERS = ("median", "hyperband", "none")
STUDY_DB = "study.db"
SEARCH_FILE = "search.json"
LOCK, TRIAL_LOCK = ".search.lock", ".trial.lock"
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120


@dataclass(frozen=True)
class SearchResult:
    """The search folder, one row per trial, the best finished trial and its config."""

    out: Path
    trials: list[dict]
    best: dict
    best_config: Config


def search(base: Config, out: str | Path, *, trials: int, seed: int = 0,
           space: SearchSpace | None = None, jobs: int = 1, pruner: str = "median",
           storage: str | None = None, progress: bool = False,
           log: Callable[[str], None] = print) -> SearchResult:
    """Run (or resume, or extend) an Optuna search of ``trials`` finished trials of ``base``
    into ``out``, ``jobs`` trials at once in worker processes; see the module docstring.

    Writes ``out/trials.csv`` (number, state, the sampled fields, ``val_error``, ``epochs``,
    ``train_seconds``, ``seconds``) and ``out/best_config.yaml`` (the finished trial of lowest
    validation error), loadable with ``magnetdml train --config``."""
    base = base.validate()
    check_int("trials", trials, minimum=1)
    check_int("seed", seed, minimum=0)
    jobs = check_int("jobs", jobs, minimum=1, fix="the number of trials trained at once")
    check_choice("pruner", pruner, PRUNERS)
    space = space or SearchSpace(base.loss.name)
    if space.loss != base.loss.name:
        raise ValueError(f"the search space is for loss {space.loss!r} but the config trains "
                         f"{base.loss.name!r}; build SearchSpace({base.loss.name!r})")
    from ..training.setup import load_splits
    splits = load_splits(base)
    if splits.val is None:
        raise ValueError("data.val_fraction (or data.val_classes) must be > 0 for a search "
                         f"(trials are scored on the validation split); got "
                         f"{base.data.val_fraction}; e.g. 0.1 (or a dataset with its own "
                         "validation split, e.g. omniglot val_drawers)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # trials: no plots, no test scores between passes (the tuner reads the validation split)
    # trials: no plots, no test scores, no validation beyond the tuner's (tuner_error); they
    # train the full budget (no patience): the pruner stops the hopeless ones
    base = apply_overrides(dataclasses.replace(base, out=None),
                           {"eval.plots": False, "eval.every": 0, "eval.final": False,
                            "train.patience": 0})
    if jobs > 1:    # each worker gets cores // jobs threads (unless train.threads is set)
        base = with_threads(base, jobs)
    counts = np.bincount(splits.train.labels)
    task = {"base": config_to_dict(base), "space": space, "seed": seed, "trials": trials,
            "pruner": pruner, "out": str(out), "num_classes": int((counts > 0).sum()),
            "smallest_class": int(counts[counts > 0].min()), "progress": progress}
    local = storage is None
    url = storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
    with _folder_lock(out) if local else contextlib.nullcontext():
        settings = {"seed": seed, "pruner": pruner, "space": space.describe(),
                    "base": config_to_dict(base)}
        _check_search_file(out, settings)
        task["study"] = study_name(out, settings)
        study = _study(url, task["study"], task)
        if local:       # this invocation owns the folder: its RUNNING trials are dead ones
            _retry_unfinished(study)
        done = _finished_count(study)
        if done >= trials:
            log(f"{done} trial(s) finished before; nothing to train")
        elif jobs == 1:
            _work(url, task, 0, log)
        else:
            for _ in in_workers(_work, [(url, task, worker, None) for worker in range(jobs)],
                                jobs=jobs):
                pass
        study = _study(url, task["study"], task)
    return _summarise(study, base, space, out, seed)


def study_name(out: Path, settings: dict) -> str:
    """The study's name in its storage: the search folder's name and a digest of what makes
    the search (base config less machine fields, space, seed, pruner), so that machines running
    the same command share one study and different searches in one storage never mix."""
    import hashlib

    from ..training.run_dir import run_identity

    identity = {**settings, "base": run_identity(json.loads(json.dumps(settings["base"])))}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{out.name}-{digest.hexdigest()[:10]}"


def _study(url: str, name: str, task: dict, worker: int = 0):
    """The study at ``url`` (created on first use), with a TPE sampler seeded by the search's
    ``seed``, the number of trials the study holds and the ``worker``: a resumed or extended
    search draws what an uninterrupted one would (one worker), and workers draw apart."""
    seed, epochs = task["seed"], task["base"]["train"]["epochs"]
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(5):  # processes that start together race to create the tables
        try:
            storage = RDBStorage(url, engine_kwargs=kwargs,
                                 heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                     max_retry=3, inherit_intermediate_values=True))
            break
        except Exception as error:              # sqlalchemy's: a table or row made twice
            if attempt == 4 or not type(error).__module__.startswith("sqlalchemy"):
                raise
            time.sleep(1 + attempt)
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2,
                                                             n_warmup_steps=1),
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1,
                                                                   max_resource=epochs),
               "none": optuna.pruners.NopPruner}
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                pruner=pruners[task["pruner"]](), load_if_exists=True)
    state = np.random.SeedSequence([seed, len(study.trials), worker]).generate_state(1)[0]
    study.sampler = optuna.samplers.TPESampler(
        seed=int(state), n_startup_trials=max(2, min(10, task["trials"] // 3)))
    return study


def _finished_count(study) -> int:
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _retry_unfinished(study) -> None:
    """Fail the trials a killed search left RUNNING and queue each again with its values and
    its run folder (which resumes from its checkpoint)."""
    from optuna.trial import TrialState
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs=dict(trial.user_attrs),
                            skip_if_exists=False)


def _work(url: str, task: dict, worker: int, log: Callable[[str], None] | None) -> None:
    """One process's share: trials until ``trials`` have finished (or are being trained).
    Module level: search workers run it in other processes."""
    from optuna.trial import TrialState

    log = log or (lambda _message: None)
    out, trials = Path(task["out"]), task["trials"]
    while True:
        lock = _TrialLock(out / TRIAL_LOCK)    # held until the new trial is RUNNING: workers
        try:                                   # that count at once would overshoot
            study = _study(url, task["study"], task, worker)
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if _finished_count(study) + running >= trials:
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


def _objective(trial, task: dict, log: Callable[[str], None]) -> float:
    """Train one trial (or resume its folder), reporting the validation error every pass."""
    import optuna

    from ..training import config_from_dict

    space: SearchSpace = task["space"]
    params = space.suggest(trial, task["num_classes"], task["smallest_class"])
    name = trial.user_attrs.get("run_dir") or f"trial_{trial.number:03d}"
    trial.set_user_attr("run_dir", name)
    trial.set_user_attr("values", params)       # with the values fixed by a range of one
    run_dir = Path(task["out"]) / name
    config = apply_params(config_from_dict(task["base"]), {**params, "out": str(run_dir)})
    started = time.perf_counter()

    def on_epoch(trainer, record: dict) -> None:
        metric, error = tuner_error(trainer)
        record["tuner"] = {"metric": metric, "error": error}
        trial.report(error, trainer.epoch)
        if trainer.epoch < trainer.config.train.epochs and trial.should_prune():
            trial.set_user_attr("train_seconds", round(trainer.timing["train_seconds"], 3))
            raise optuna.TrialPruned(f"pruned after pass {trainer.epoch}")

    try:
        if not (run_dir / SUMMARY).is_file():
            train(config, progress=task["progress"], on_epoch=on_epoch)
    except optuna.TrialPruned:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        log(f"trial {trial.number}: pruned {_describe(params)}")
        raise
    except (ValueError, FloatingPointError) as error:
        if "diverged" not in str(error) and not isinstance(error, FloatingPointError):
            raise                             # a broken config: stop the search
        trial.set_user_attr("diverged", str(error).splitlines()[0])
        log(f"trial {trial.number}: diverged, pruned {_describe(params)}")
        raise optuna.TrialPruned(str(error)) from error
    summary = json.loads((run_dir / SUMMARY).read_text())
    value = trial_error(run_dir)
    for disposable in DISPOSABLE:         # scored: nothing reads the trial's model again
        (run_dir / disposable).unlink(missing_ok=True)
    trial.set_user_attr("train_seconds", summary.get("train_seconds"))
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    trial.set_user_attr("epochs", summary.get("epochs"))
    log(f"trial {trial.number}: val error {value:.4f} {_describe(params)}")
    return value


def tuner_error(trainer) -> tuple[str, float]:
    """The validation error a trial reports after a pass, at the least cost: the validation
    split embedded once and scored by the loss's own rule, never the training set embedded
    again (a full validation, with kNN against every training embedding, would cost a
    trial about a third of a pass more):

    * a class-disjoint split (``data.val_classes``): ``1 - MAP@R`` among its own examples;
    * a cluster loss: kNC error (paper §3.3) with the index the pass refreshed;
    * any other loss (its spec's own metric is kNN): soft-kNN error among the validation
      examples, each left out of its own neighbours."""
    from ..evaluation import KNearestClusters, evaluate

    config, val = trainer.config, trainer.splits.val
    if config.data.val_classes:
        return "1 - map_at_r", float(trainer.validation_scores()[1])
    queries = trainer.embed(val)                                          # (V, E)
    if config.loss.spec().own_metric == "knc_error":
        index, variance = trainer._scoring_index(trainer.train_embeddings())  # refreshed: cached
        knc = KNearestClusters(neighbours=config.eval.neighbours).fit(index, variance)
        return "knc_error", float(np.mean(knc.predict(queries) != val.labels))
    k = min(config.eval.knn_k, len(val.labels) - 1)
    return "knn_error (leave-one-out in val)", evaluate(queries, val.labels,
                                                        metrics=["knn_error"], k=k)["knn_error"]


def trial_error(run_dir: Path) -> float:
    """The validation error a finished trial ends with (its last pass's, from
    ``metrics.jsonl``)."""
    last = json.loads((run_dir / HISTORY).read_text().splitlines()[-1])
    return float(last["tuner"]["error"])


def apply_params(base: Config, params: dict) -> Config:
    """``base`` with a trial's values: config fields, and ``loss.options.NAME`` keywords
    merged into the ``loss.options`` mapping (pytorch-metric-learning losses)."""
    options = {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith("loss.options.")}
    fields = {k: v for k, v in params.items() if not k.startswith("loss.options.")}
    if options:
        current = yaml.safe_load(getattr(base.loss, "options", "") or "") or {}
        fields["loss.options"] = yaml.safe_dump({**current, **options},
                                                default_flow_style=True).strip()
    return apply_overrides(base, fields)


def _describe(params: dict) -> str:
    return " ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else
                    f"{k.split('.')[-1]}={v}" for k, v in params.items())


def _summarise(study, base: Config, space: SearchSpace, out: Path, seed: int) -> SearchResult:
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL and "run_dir" in t.user_attrs and any(
                o.user_attrs.get("run_dir") == t.user_attrs["run_dir"] and o.number > t.number
                for o in study.trials):
            continue                          # killed, then retried under a later number
        last = (t.intermediate_values[max(t.intermediate_values)]
                if t.intermediate_values else math.nan)
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     **t.user_attrs.get("values", {}),
                     "val_error": t.value if t.value is not None else last,
                     "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                     "train_seconds": t.user_attrs.get("train_seconds"),
                     "seconds": t.user_attrs.get("seconds"),
                     "run_dir": t.user_attrs.get("run_dir"),
                     **({"diverged": t.user_attrs["diverged"]}
                        if "diverged" in t.user_attrs else {})})
    finished = [r for r in rows if r["state"] == "complete"]
    if not finished:
        raise ValueError(f"no trial of the search in {str(out)!r} finished (all were pruned or "
                         "diverged); widen the space (e.g. a lower --space.lr) or add trials")
    best = min(finished, key=lambda r: (r["val_error"], r["trial"]))
    best_trial = next(t for t in study.trials if t.number == best["trial"])
    best_params = best_trial.user_attrs["values"]
    best_config = apply_params(base, best_params)
    _write_table(out / "trials.csv", rows)
    header = (f"# magnetdml search: best of {len(finished)} finished trial(s) "
              f"({sum(r['state'] == 'pruned' for r in rows)} pruned) by validation error "
              f"{best['val_error']:.4f} (trial {best['trial']}, seed {seed}).\n"
              "# Train on it: magnetdml train --config best_config.yaml --out RUN.\n")
    data = config_to_dict(best_config)
    data.pop("out")
    (out / "best_config.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return SearchResult(out, rows, {**best, "params": best_params}, best_config)


@contextlib.contextmanager
def _folder_lock(out: Path, blocking: bool = False):
    """An exclusive lock on the search folder: one invocation at a time (``blocking``: wait
    for it, as the invocation's own workers do around creating a trial)."""
    handle = open(out / LOCK, "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise ValueError(f"another search is running in {str(out)!r}; wait for it, or "
                             "add --jobs to it instead of starting a second one") from None
        yield
    finally:
        handle.close()


def _check_search_file(out: Path, settings: dict) -> None:
    """Refuse to mix trials of a different search into ``out``; extending trials is fine.
    The base configs are compared through the config tree, machine fields aside (as finished
    runs are): a field added since the search ran counts at its default."""
    path = out / SEARCH_FILE
    settings = json.loads(json.dumps(settings))
    if path.exists() and _same_search(json.loads(path.read_text()), settings) is False:
        raise ValueError(f"search folder {str(out)!r} holds a search with other settings "
                         "(base config, space, seed or pruner); choose another --out")
    write_json(path, settings)


def _same_search(saved: dict, settings: dict) -> bool:
    from ..training import config_from_dict
    from ..training.run_dir import run_identity

    if not isinstance(saved, dict) or set(saved) != set(settings):
        return False
    try:
        base = run_identity(config_to_dict(config_from_dict(saved["base"])))
    except (TypeError, ValueError):
        return False
    return base == run_identity(settings["base"]) and all(
        saved[key] == settings[key] for key in settings if key != "base")


def _write_table(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
