"""One search trial: draw its values, train it, report its validation error after every pass.

A trial is a :func:`magnetdml.training.train` run in its own folder. After every pass it
reports :func:`tuner_error` to Optuna, and the pruner may stop it there. With the base
config's ``train.patience`` ``P``, a trial also ends, as a final run would, once that error has
not improved for ``P`` passes (``e - e* >= P``). A run that diverges counts as pruned. Any other
error stops the search. Its value (:func:`trial_error`) is the error of the model a final run
would keep: the best pass's with patience, else the last pass's.

With class folds (``data.val_folds = K``, k-fold cross-validation over classes) a trial is K
such runs in ``fold_0`` .. ``fold_<K-1>`` of its folder, one after the other; fold ``k``'s pass
``p`` reports at step ``k * epochs + p`` (so the pruner compares the same fold's same pass
across trials), and the trial's value is the mean of its folds' values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from ..training import Config, apply_overrides, train
from ..training.run_dir import CHECKPOINT, SUMMARY, RunDir
from .run_stage import DISPOSABLE
from .trial_space import SearchSpace

#: A cross-validated trial's run of fold k (``data.val_folds``), inside the trial's folder.
FOLD = "fold_%d"
#: The most training examples a kNN loss's trial is scored against after every pass.
TUNER_REFERENCES = 5_000
#: The study attribute naming how its trials' kNN score counts neighbours on a reference
#: sample (:func:`tuner_error`); a study made before it has none and keeps ``eval.knn_k``
#: there, so that all of one study's trials are scored alike.
TUNER_RULE, SCALED_NEIGHBOURS = "tuner_neighbours", "scaled to the sample"


def objective(trial, task: dict, log: Callable[[str], None]) -> float:
    """Train one trial (or resume its folder), reporting the validation error every pass."""
    import optuna

    from ..training import config_from_dict

    space: SearchSpace = task["space"]
    params = space.suggest(trial, task["num_classes"], task["smallest_class"])
    name = trial.user_attrs.get("run_dir") or f"trial_{trial.number:03d}"
    trial.set_user_attr("run_dir", name)
    trial.set_user_attr("values", params)  # with the values fixed by a range of one
    run_dir = Path(task["out"]) / name
    config = apply_params(config_from_dict(task["base"]), {**params, "out": str(run_dir)})
    # the trial applies the patience itself, to the tuner's error (no second validation)
    patience, config = config.train.patience, apply_overrides(config, {"train.patience": 0})
    folds = config.data.val_folds
    started = time.perf_counter()
    try:
        if folds:  # k-fold cross-validation over classes: one run per fold, their mean
            values = [
                _train_fold(
                    trial,
                    apply_overrides(config, {"data.val_fold": k, "out": str(run_dir / (FOLD % k))}),
                    patience,
                    task,
                    step=k * config.train.epochs,
                    last=k == folds - 1,
                )
                for k in range(folds)
            ]
        else:
            values = [_train_fold(trial, config, patience, task)]
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        log(f"trial {trial.number}: {pruned.args[0]} {_describe(params)}")
        raise
    value = float(np.mean([v for v, _ in values]))
    summaries = [summary for _, summary in values]
    trial.set_user_attr("train_seconds", sum(s.get("train_seconds") or 0.0 for s in summaries))
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    trial.set_user_attr("epochs", sum(s.get("epochs") or 0 for s in summaries))
    if folds:
        trial.set_user_attr("fold_errors", [v for v, _ in values])
    log(f"trial {trial.number}: val error {value:.4f} {_describe(params)}")
    return value


def _train_fold(
    trial, config: Config, patience: int, task: dict, *, step: int = 0, last: bool = True
) -> tuple[float, dict]:
    """Train (or resume) the run of ``config`` and return its value (:func:`trial_error`) and
    summary; each pass reports its tuner error to Optuna at step ``step + pass`` (a fold's
    passes follow the previous folds'), where the pruner may stop the trial."""
    import optuna

    run_dir = Path(config.out)
    errors = _tuner_errors(run_dir)  # {epoch: error} of the passes before a resume

    scaled = trial.study.user_attrs.get(TUNER_RULE) == SCALED_NEIGHBOURS

    def on_epoch(trainer, record: dict) -> None:
        metric, error = tuner_error(trainer, scaled=scaled)
        record["tuner"] = {"metric": metric, "error": error}
        errors[trainer.epoch] = error
        best = min(errors, key=lambda epoch: (errors[epoch], epoch))  # e*, earliest on ties
        if patience and trainer.epoch - best >= patience:
            trainer.stop_requested = True  # converged: no more passes
        trial.report(error, step + trainer.epoch)
        final = last and trainer.epoch >= trainer.config.train.epochs
        if not final and trial.should_prune():
            trial.set_user_attr("train_seconds", round(trainer.timing["train_seconds"], 3))
            raise optuna.TrialPruned(f"pruned after pass {step + trainer.epoch}")

    try:
        if not (run_dir / SUMMARY).is_file():
            train(config, progress=task["progress"], on_epoch=on_epoch)
    except optuna.TrialPruned:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
        raise
    except (ValueError, FloatingPointError) as error:
        if "diverged" not in str(error) and not isinstance(error, FloatingPointError):
            raise  # a broken config: stop the search
        trial.set_user_attr("diverged", str(error).splitlines()[0])
        raise optuna.TrialPruned("diverged, pruned") from error
    summary = json.loads((run_dir / SUMMARY).read_text())
    value = trial_error(run_dir, best=bool(patience))
    for disposable in DISPOSABLE:  # scored: nothing reads the trial's model again
        (run_dir / disposable).unlink(missing_ok=True)
    return value, summary


def tuner_error(trainer, *, scaled: bool = True) -> tuple[str, float]:
    """The validation error a trial reports after a pass: the final runs' own early-stopping
    score (:meth:`~magnetdml.training.trainer.Trainer.validation_scores`), at the least cost:

    * a class-disjoint split (``data.val_classes`` or ``val_folds``): ``1 - MAP@R`` among its
      own examples;
    * a cluster loss: kNC error (paper §3.3) with the index the pass refreshed (the training
      embeddings are the refresh's: nothing is embedded twice);
    * any other loss (its spec's own metric is kNN): soft-kNN error of the validation
      examples against the training embeddings (``k = eval.knn_k`` neighbours); on a
      training set of ``N`` > :data:`TUNER_REFERENCES` = ``M`` examples, against a seeded
      sample of ``M`` with ``k' = max(1, round(k M / N))`` neighbours (embedding a large
      training set again every pass is what a trial would pay beyond its training). The
      ``k`` nearest of all ``N`` fill a ball that holds about ``k M / N`` of a uniform
      sample, so ``k'`` scores the neighbourhood the final runs score. On Fashion-MNIST
      (54k, ``k' = 12``), over 5 learning rates x 5 passes of softmax and of triplet on the
      MLP (``benchmarks/tuner_fidelity.py``), the sample's error was 0.005-0.009 above the
      full score where ``k = 128`` on the sample was 0.008-0.018 above, Spearman 0.99 with
      the full score either way, and its search took 0.058 s against 0.146 s; ranked per
      pass across the 5 rates it swapped a little more often (Kendall 0.75-1.0 against
      0.84-1.0), between rates whose full errors were close. With ``scaled=False``
      (studies made before this rule) the sample keeps ``k``.

    A leave-one-out kNN among the validation examples alone would save embedding the training
    set, but with few validation examples per class (two drawings per Omniglot character)
    a query has almost no neighbours of its class there, and the error (0.79-0.93 where the
    runs reach ~0.3) no longer ranks the trials."""
    from ..evaluation import evaluate
    from ..training.embed import search_on_idle_cores

    config, val = trainer.config, trainer.splits.val
    if config.data.class_disjoint_val():
        return "1 - map_at_r", float(trainer.validation_scores()["retrieval_error"])
    queries = trainer.embed(val)  # (V, E)
    if config.loss.spec().own_metric == "knc_error":
        knc = trainer.knc(trainer.train_embeddings())  # the pass's refresh embedded them
        return "knc_error", float(np.mean(knc.predict(queries) != val.labels))
    # the kNN error alone: the run's full validation would also fit a kNC index every pass
    train, k = trainer.splits.train, config.eval.knn_k
    if len(train) <= TUNER_REFERENCES:
        metric, reference, labels = "knn_error", trainer.train_embeddings(), trainer.labels
    else:
        rows = np.random.default_rng(0).choice(len(train), TUNER_REFERENCES, replace=False)
        rows = np.sort(rows)
        reference, labels = trainer.embed(train.subset(rows)), train.labels[rows]
        metric = f"knn_error ({TUNER_REFERENCES} references)"
        if scaled:
            k = max(1, round(k * TUNER_REFERENCES / len(train)))
            metric = f"knn_error ({TUNER_REFERENCES} references, k {k})"
    with search_on_idle_cores():
        error = evaluate(queries, val.labels, reference, labels, ["knn_error"], k=k)
    return metric, float(error["knn_error"])


def trial_error(run_dir: Path, *, best: bool = False) -> float:
    """The validation error a finished trial ends with, from ``metrics.jsonl``: its last
    pass's, or with ``best`` (a trial with patience) its best pass's."""
    errors = _tuner_errors(run_dir)
    return min(errors.values()) if best else errors[max(errors)]


def _tuner_errors(run_dir: Path) -> dict[int, float]:
    """``{epoch: tuner error}`` of the passes logged in ``run_dir`` (none yet: ``{}``)."""
    records = RunDir(run_dir).read_history()
    return {
        int(r["epoch"]): float(r["tuner"]["error"])
        for r in records
        if isinstance(r.get("tuner"), dict) and "epoch" in r
    }


def config_fields(base: Config, params: dict) -> dict:
    """A trial's values as config overrides of ``base``: config fields as they are, and the
    ``loss.options.NAME`` keywords (pytorch-metric-learning losses) merged into ``base``'s
    ``loss.options`` mapping as one ``loss.options`` field."""
    options = {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith("loss.options.")}
    fields = {k: v for k, v in params.items() if not k.startswith("loss.options.")}
    if options:
        current = yaml.safe_load(base.loss.options or "") or {}
        fields["loss.options"] = yaml.safe_dump(
            {**current, **options}, default_flow_style=True
        ).strip()
    return fields


def apply_params(base: Config, params: dict) -> Config:
    """``base`` with a trial's values (see :func:`config_fields`)."""
    return apply_overrides(base, config_fields(base, params))


def _describe(params: dict) -> str:
    return " ".join(
        f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
        for k, v in params.items()
    )
