"""Load a saved run folder and re-evaluate it (``magnetdml evaluate RUN_DIR``).

A run folder (see :mod:`magnetdml.training.run_dir`) holds ``config.json`` and the atomic
``checkpoint.pt`` of its last finished epoch: the model weights, the cluster index and the
running ``sigma^2`` (paper §3.3). :func:`load_run` rebuilds data, model and index from them with
the same builders training used (``training.setup``), so :func:`evaluate_run` reproduces the
``knc_error`` / ``knn_error`` that training wrote into ``metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_int
from ..clustering import ClusterIndex
from ..evaluation import UNSEEN_METRICS, evaluate, knc_errors
from ..evaluation.api import CLUSTERING_METRICS, KNC_METRICS, METRICS
from .atomic_files import write_json
from .checkpoint_check import check_checkpoint, load_model_state
from .class_scores import CLASSIFIER_METRICS, classifier_metrics
from .config import Config
from .config_io import config_from_dict
from .embed import embed_inputs
from .inference import RunInference
from .run_dir import CHECKPOINT, CONFIG, HISTORY, SUMMARY, RunDir, missing_checkpoint
from .setup import load_splits, make_index, make_loss, make_model

EVALUATION = "evaluation.json"
SPLITS = ("test", "unseen", "val", "all")


@dataclass
class LoadedRun(RunInference):
    """A run folder rebuilt for evaluation: ``config``, data ``splits``, the ``model`` in eval
    mode with the checkpoint's weights, the run's cluster ``index`` and running ``sigma2``
    (``None`` for losses trained without an index), the iteration whose embeddings the index
    clusters (``index_iteration``), the checkpoint's ``epoch`` / ``iteration``, the
    ``summary`` of ``metrics.json`` (``None`` while unfinished) and the ``history`` lines.
    It classifies, retrieves and clusters new data (:class:`~.inference.RunInference`)."""

    path: Path
    config: Config
    splits: Any
    model: nn.Module
    index: ClusterIndex | None
    sigma2: float | None
    epoch: int
    iteration: int
    index_iteration: int
    summary: dict | None
    history: list[dict] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: the loss with its trained parameters, for losses scored by their own classifier
    #: (softmax, proxy losses: their spec's ``own_scores == "classifier"``); else ``None``
    loss_fn: nn.Module | None = None

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def embed(self, dataset, *, copies: int | None = None) -> np.ndarray:
        """Eval-mode embeddings ``(N, E)`` of ``dataset``, averaged over ``copies`` augmented
        copies (default: the run's ``eval.test_time_augment``; 0 = none). The copies are drawn
        from a fresh generator seeded like training's, so they differ from the ones training
        drew: only runs without them reproduce ``metrics.json`` exactly."""
        copies = self.config.eval.test_time_augment if copies is None else copies
        augment = None
        if copies:
            from ..data.augment import seeded_rescale_crop

            config = self.config
            augment, _ = seeded_rescale_crop(config.data.max_scale, config.train.seed, self.device)
        return embed_inputs(self.model, dataset, device=self.device, augment=augment, copies=copies)


def load_run(run_dir: str | Path, *, device: str = "cpu") -> LoadedRun:
    """Rebuild the run saved in ``run_dir`` from ``config.json`` and ``checkpoint.pt``."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"run_dir {str(path)!r} does not exist; pass the folder that "
            "'magnetdml train --out' wrote"
        )
    if (path / CONFIG).is_file() and not (path / CHECKPOINT).is_file():
        raise ValueError(missing_checkpoint(path))
    missing = [name for name in (CONFIG, CHECKPOINT) if not (path / name).is_file()]
    if missing:
        raise ValueError(
            f"run_dir {str(path)!r} is not a run folder: it lacks "
            f"{' and '.join(missing)} (a run folder holds {CONFIG}, {HISTORY}, "
            f"{CHECKPOINT} after its first epoch, and {SUMMARY} when finished)"
        )
    config = config_from_dict(json.loads((path / CONFIG).read_text())).validate()
    run = RunDir(path)
    if device == "auto":  # the trainer's choice: cuda when there is one
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} is not available (torch sees no CUDA device); use --device cpu"
        )
    torch_device = torch.device(device)
    state = run.load_checkpoint(map_location=torch_device)
    check_checkpoint(state, config, run.checkpoint_path, uses_index=config.loss.spec().uses_index)
    splits = load_splits(config)
    model = make_model(config, splits.input_shape).to(torch_device)
    load_model_state(model, state["model"], config, run.checkpoint_path)
    model.eval()
    loss_fn = None
    if config.loss.spec().own_scores == "classifier" and state.get("loss"):
        with torch.random.fork_rng(devices=[]):  # its fresh weights are overwritten
            loss_fn = make_loss(config, splits.num_classes).to(torch_device)
        loss_fn.load_state_dict(state["loss"])
        loss_fn.eval()
    index = None
    if state.get("index") is not None:
        index = make_index(config).load_state_dict(state["index"])
    summary_path = path / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return LoadedRun(
        path=path,
        config=config,
        splits=splits,
        model=model,
        index=index,
        sigma2=state.get("variance"),
        epoch=int(state["epoch"]),
        iteration=int(state["iteration"]),
        index_iteration=int(state.get("index_iteration", state["iteration"])),
        summary=summary,
        history=run.read_history(),
        device=torch_device,
        loss_fn=loss_fn,
    )


def evaluate_run(
    run: LoadedRun | str | Path,
    *,
    split: str = "all",
    metrics: Sequence[str] | None = None,
    write: bool = True,
    test_time_augment: int | None = None,
    device: str = "cpu",
) -> dict[str, dict]:
    """Re-evaluate a saved run exactly as training scored it; returns ``{split: {metric:
    value}}``. The one scoring path of finished runs (``magnetdml evaluate``, search trials,
    experiments).

    ``test`` (and ``val``): held-out examples of the training classes against the training
    set's embeddings, every metric of :func:`magnetdml.evaluation.evaluate` plus kNC
    (:func:`magnetdml.evaluation.fit_knc`: the run's index and ``sigma^2 / s``, paper §3.3,
    ``L = eval.neighbours`` nearest centres).
    ``unseen``: the classes held out of training, among themselves
    (:data:`magnetdml.evaluation.UNSEEN_METRICS`). ``all``: every split the run's data has.
    ``metrics`` keeps only the named metrics. Queries are averaged over ``test_time_augment``
    augmented copies (default: the run's ``eval.test_time_augment``; 0 = none); the training
    references never are, as in training. ``device`` loads a run given by its folder
    (``"auto"``: cuda when there is one). With ``write``, the result (and the checkpoint's
    epoch) goes to ``RUN_DIR/evaluation.json``.
    """
    check_choice("split", split, SPLITS)
    if test_time_augment is not None:
        check_int(
            "test_time_augment",
            test_time_augment,
            minimum=0,
            fix="the number of augmented copies averaged; 0 = none",
        )
    if metrics is not None:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in METRICS and m not in CLASSIFIER_METRICS]
        if unknown:
            raise ValueError(
                f"metrics must be names of magnetdml.evaluation.METRICS; got "
                f"unknown {unknown}; valid: {', '.join(METRICS)}"
            )
    if not isinstance(run, LoadedRun):
        run = load_run(run, device=device)
    splits = run.splits
    wanted = ["test", "val", "unseen"] if split == "all" else [split]
    if split in ("unseen", "val") and getattr(splits, split) is None:
        hint = "data.unseen_classes > 0" if split == "unseen" else "data.val_fraction > 0"
        raise ValueError(
            f"split {split!r} is empty for this run: it was trained without "
            f"{hint}; use --split test"
        )
    results: dict[str, dict] = {}
    for name in wanted:
        dataset = getattr(splits, name)
        if dataset is None:
            continue
        queries = run.embed(dataset, copies=test_time_augment)  # (N, E)
        if name == "unseen":
            names = [
                m
                for m in (metrics or UNSEEN_METRICS)
                if m in UNSEEN_METRICS or m in CLUSTERING_METRICS
            ]
            if names:
                results[name] = evaluate(
                    queries, dataset.labels, metrics=names, seed=run.config.train.seed
                )
            continue
        results[name] = _seen_metrics(run, queries, dataset.labels, metrics)
    if write:
        write_evaluation(run, results)
    return results


def write_evaluation(run: LoadedRun, results: dict[str, dict]) -> Path:
    """``RUN_DIR/evaluation.json``: the results with the checkpoint's epoch and iteration."""
    path = run.path / EVALUATION
    write_json(
        path, {"epoch": run.epoch, "iteration": run.iteration, "finished": run.finished, **results}
    )
    return path


def evaluate_on(
    run: LoadedRun | str | Path,
    dataset: str,
    data_dir: str | None = None,
    *,
    options: str = "",
    metrics: Sequence[str] | None = None,
) -> dict[str, dict]:
    """Score a saved run on another dataset ``dataset`` (``data_dir``, loader ``options`` as
    YAML), loaded with the run's split seed; returns ``{part: {metric: value}}``.

    When its classes are the run's (same class names: e.g. the same data in another copy, or
    Omniglot with ``{evaluation: true}``, whose background classes are the run's), its test
    split is scored as seen classes (``"test"``: kNC with the run's index, soft kNN against
    the run's training embeddings), and its held-out classes, if any, as ``"unseen"``. When
    its classes are others, every example of it is scored as ``"unseen"``: clustering and
    retrieval among themselves (:data:`UNSEEN_METRICS`). New data of the run's own kind is
    read with the run's reading options (an image folder's class level, size, channels:
    :func:`~.new_data.load_like_run`)."""
    from .new_data import load_like_run

    if not isinstance(run, LoadedRun):
        run = load_run(run)
    return score_other(run, load_like_run(run, dataset, data_dir, options), metrics=metrics)


def score_other(run: LoadedRun, other, *, metrics: Sequence[str] | None = None) -> dict[str, dict]:
    """:func:`evaluate_on` for data already loaded (``DatasetSplits`` ``other``); each phase
    is a line on stderr (``magnetdml --quiet`` silences them), the embedding passes a bar."""
    from .._progress import phase

    unseen_names = [m for m in (metrics or UNSEEN_METRICS) if m in UNSEEN_METRICS]
    results: dict[str, dict] = {}
    if list(other.class_names) == list(run.splits.class_names):
        phase(
            f"embedding its test split ({len(other.test):,} inputs of the run's classes) "
            f"and the run's training split ({len(run.splits.train):,}, the reference)"
        )
        queries = run.embed(other.test)
        run.reference_embeddings()
        phase("scoring the test split (kNC, kNN, retrieval, clustering)")
        results["test"] = _seen_metrics(run, queries, other.test.labels, metrics)
        parts = [other.unseen] if other.unseen is not None else []
    else:
        parts = [p for p in (other.train, other.test, other.unseen) if p is not None]
    if parts and unseen_names:
        phase(f"embedding {sum(len(p) for p in parts):,} inputs of classes the run never saw")
        queries = np.concatenate([run.embed(p) for p in parts])
        labels = np.concatenate([p.labels for p in parts])
        phase("scoring them among themselves (clustering, retrieval)")
        results["unseen"] = evaluate(
            queries, labels, metrics=unseen_names, seed=run.config.train.seed
        )
    return results


def _seen_metrics(run: LoadedRun, queries, labels, metrics) -> dict[str, float]:
    """Seen-class metrics: kNC with the run's classifier (``L = eval.neighbours``), the rest
    against the training embeddings (soft kNN with ``k = eval.knn_k``)."""
    names = list(metrics) if metrics is not None else list(METRICS)
    if run.loss_fn is not None and metrics is None:
        names += CLASSIFIER_METRICS
    own = [m for m in names if m in CLASSIFIER_METRICS]
    knc = [m for m in names if m in KNC_METRICS]
    others = [m for m in names if m not in KNC_METRICS and m not in own]
    out: dict[str, float] = {}
    if own:
        if run.loss_fn is None:
            raise ValueError(
                f"{own[0]} needs a loss with its own classifier (softmax, proxy "
                f"losses); this run's loss {run.config.loss.name!r} has none"
            )
        out.update(classifier_metrics(run.loss_fn, queries, labels))
    if others:
        out.update(
            evaluate(
                queries,
                labels,
                reference=run.reference_embeddings(),
                reference_labels=run.splits.train.labels,
                metrics=others,
                k=run.config.eval.knn_k,
                seed=run.config.train.seed,
            )
        )
    if knc:
        out.update(knc_errors(run.classifier(), queries, labels, knc))
    return {m: out[m] for m in names}
