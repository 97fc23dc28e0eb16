"""Random hyperparameter search scored on a validation split (paper Appendix B).

The paper tunes, by random search on validation error, the learning rate and its per-epoch
annealing factor for every loss; for Magnet Loss also the gap ``alpha``, the clusters per batch
``M``, the examples per cluster ``D`` (``M * D <= 48``) and the clusters per class ``K``; for
triplet loss the margin and the fraction of nearest impostors. Appendix B gives the optima
found (lr 0.0006-0.024, annealing 0.966-0.995 or none, alpha 0.70-7.18, K 1-16, triplet gap
0.30-0.55, impostor fraction 0.007-0.18) but not the ranges; ``DEFAULT_SPACE`` brackets those
optima with some room on each side.

Each trial is a :func:`magnetdml.training.train` run in ``out/trial_NNN`` (with
``data.val_fraction > 0``), then its final model is scored on the validation split by
:func:`evaluate_run`. Trial ``i`` draws its parameters from ``numpy.random.default_rng([seed,
i])``, so a search is reproducible, can be extended with more trials, and resumes by skipping
trials whose ``val_metrics.json`` exists (an interrupted trial resumes from its checkpoint).
A trial that fails (e.g. diverges) is recorded as failed and skipped on resume; if the first
three all fail, the base config is at fault and the search stops with the first error.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ._validation import check_choice, check_int
from .training import Config, apply_overrides, config_to_dict, train
from .training.run_dir import SUMMARY, write_json

METRICS = ("knc_error", "knn_error")
VAL_METRICS = "val_metrics.json"
SEARCH_FILE = "search.json"
FAIL_FAST = 3           # stop when this many first trials all fail


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: the config field it sets and its distribution."""

    field: str                 # the config field, e.g. "train.lr"
    low: float
    high: float
    scale: str                 # "log": log-uniform; "linear": uniform
    integer: bool = False      # round to an integer (log scale: log-uniform over integers)
    minimum: float = 0.0       # hard limit of any user range
    maximum: float = math.inf
    help: str = ""

    def check_range(self, name: str, low: float, high: float) -> None:
        strict = self.minimum == 0          # no searched parameter may be 0 (or < 0)
        rule = (f"space.{name} must be LOW:HIGH with {self.minimum:g} "
                f"{'<' if strict else '<='} LOW <= HIGH "
                f"<= {self.maximum:g}{' (integers)' if self.integer else ''}")
        bad = (low > high or low < self.minimum or high > self.maximum or (strict and low <= 0)
               or (self.integer and (low != int(low) or high != int(high))))
        if bad:
            fix = "; swap the bounds" if low > high else ""
            raise ValueError(f"{rule}; got {low:g}:{high:g}{fix}")


DEFAULT_SPACE: dict[str, Param] = {
    "lr": Param("train.lr", 1e-4, 1e-1, "log", help="learning rate (paper: 6e-4 to 2.4e-2)"),
    "lr_decay": Param("train.lr_decay", 0.9, 1.0, "linear", maximum=1.0,
                      help="learning rate *= this every epoch (paper: 0.966-0.995 or 1)"),
    "alpha": Param("loss.alpha", 0.5, 10.0, "log", help="Magnet gap (paper: 0.70-7.18)"),
    "clusters_per_batch": Param("sampler.clusters_per_batch", 2, 24, "linear", integer=True,
                                minimum=2, help="M, clusters per batch (M * D <= max_batch)"),
    "examples_per_cluster": Param("sampler.examples_per_cluster", 2, 8, "linear",
                                  integer=True, minimum=2, help="D, examples per cluster"),
    "clusters_per_class": Param("index.clusters_per_class", 1, 16, "log", integer=True,
                                minimum=1, help="K, k-means clusters per class (paper: 1-16)"),
    "margin": Param("loss.margin", 0.05, 1.0, "log", help="triplet/contrastive/lifted margin"),
    "impostor_fraction": Param("loss.impostor_fraction", 0.005, 0.5, "log", maximum=1.0,
                               help="triplet: share of nearest impostors (paper: 0.007-0.18)"),
}
CLUSTER_PARAMS = ("clusters_per_batch", "examples_per_cluster", "clusters_per_class")
_LOSS_PARAMS = {"magnet": ("alpha",), "triplet": ("margin", "impostor_fraction"),
                "contrastive": ("margin",), "lifted": ("margin",)}


class SearchSpace:
    """The hyperparameters searched for one loss, with optional user ranges.

    ``overrides`` maps a name of ``DEFAULT_SPACE`` to ``"LOW:HIGH"`` (a range on the
    parameter's own scale) or ``"VALUE"`` (fixed), e.g. ``{"lr": "1e-4:1e-1"}``. ``M`` and
    ``D`` are drawn uniformly from the pairs in their ranges with ``M * D <= max_batch`` (the
    paper's memory bound: 48).
    """

    def __init__(self, loss: str = "magnet", overrides: dict[str, str] | None = None, *,
                 max_batch: int = 48, requires_clusters: bool | None = None) -> None:
        if requires_clusters is None:
            from .losses import build_loss
            requires_clusters = bool(getattr(build_loss(loss, embedding_dim=2, num_classes=2),
                                             "requires_clusters", False))
        names = ["lr", "lr_decay", *_LOSS_PARAMS.get(loss, ()),
                 *(CLUSTER_PARAMS if requires_clusters else ())]
        self.loss, self.max_batch = loss, check_int("max_batch", max_batch, minimum=4)
        self.params = {name: DEFAULT_SPACE[name] for name in names}
        for name, text in (overrides or {}).items():
            if name not in DEFAULT_SPACE:
                raise ValueError(f"unknown search parameter space.{name}; valid: "
                                 f"{', '.join(DEFAULT_SPACE)}")
            if name not in self.params:
                raise ValueError(f"space.{name} does not apply to loss {loss!r} (it tunes "
                                 f"{', '.join(self.params)}); drop the flag or change --loss")
            self.params[name] = _parse_range(name, str(text), self.params[name])
        if requires_clusters and not self._batch_pairs().size:
            m, d = self.params["clusters_per_batch"], self.params["examples_per_cluster"]
            raise ValueError(f"no (M, D) in space.clusters_per_batch {m.low:g}:{m.high:g} x "
                             f"space.examples_per_cluster {d.low:g}:{d.high:g} has M * D <= "
                             f"max_batch = {max_batch}; lower the ranges or raise max_batch")

    def sample(self, rng: np.random.Generator, num_classes: int | None = None
               ) -> dict[str, float | int]:
        """One draw: ``{config field: value}`` (plain python numbers). With ``num_classes``
        (classes in training), ``M`` is also capped so that the seed cluster has ``M - 1``
        impostor clusters: ``M <= 1 + K * (num_classes - 1)``."""
        values: dict[str, float | int] = {}
        for name, p in self.params.items():
            if name in ("clusters_per_batch", "examples_per_cluster"):
                continue
            if p.low == p.high:                       # fixed: exactly the user's value
                value = p.low
            elif p.scale == "log":
                top = math.log(p.high + 1) if p.integer else math.log(p.high)
                value = math.exp(rng.uniform(math.log(p.low), top))
            else:
                value = rng.uniform(p.low, p.high + 1 if p.integer else p.high)
            # exp(log(x)) may round past a bound by one ulp: clip
            values[p.field] = (min(int(value), int(p.high)) if p.integer
                               else float(min(max(value, p.low), p.high)))
        if "clusters_per_batch" in self.params:
            pairs = self._batch_pairs()                                        # (P, 2)
            k = values.get("index.clusters_per_class", 1)
            if num_classes is not None and (pairs[:, 0] <= 1 + k * (num_classes - 1)).any():
                pairs = pairs[pairs[:, 0] <= 1 + k * (num_classes - 1)]
            m, d = pairs[rng.integers(len(pairs))]
            values["sampler.clusters_per_batch"] = int(m)
            values["sampler.examples_per_cluster"] = int(d)
        return values

    def describe(self) -> dict:
        """The space as plain data (written to ``search.json``)."""
        return {"loss": self.loss, "max_batch": self.max_batch,
                "params": {n: dataclasses.asdict(p) | {"maximum": str(p.maximum)}
                           for n, p in self.params.items()}}

    def _batch_pairs(self) -> np.ndarray:
        m, d = self.params["clusters_per_batch"], self.params["examples_per_cluster"]
        mm, dd = np.meshgrid(np.arange(int(m.low), int(m.high) + 1),
                             np.arange(int(d.low), int(d.high) + 1), indexing="ij")
        pairs = np.stack([mm.ravel(), dd.ravel()], axis=1)
        return pairs[pairs[:, 0] * pairs[:, 1] <= self.max_batch]


def _parse_range(name: str, text: str, param: Param) -> Param:
    parts = text.split(":")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"space.{name} must be LOW:HIGH or one VALUE (numbers); got "
                         f"{text!r}; e.g. --space.{name} {param.low:g}:{param.high:g}")
    param.check_range(name, low, high)
    return dataclasses.replace(param, low=low, high=high)


@dataclass(frozen=True)
class SearchResult:
    """The search folder, one row per finished trial, and the best trial's config."""

    out: Path
    trials: list[dict]
    best: dict
    best_config: Config


def random_search(base: Config, out: str | Path, *, trials: int, seed: int = 0,
                  space: SearchSpace | None = None, metric: str | None = None,
                  progress: bool = False, log=print) -> SearchResult:
    """Run ``trials`` random trials of ``base`` (see the module docstring) into ``out``.

    Writes ``out/trials.csv`` (trial, status, the sampled fields, ``val_knc_error``,
    ``val_knn_error``, ``train_seconds``, ``seconds``) and ``out/best_config.yaml`` (the trial
    with the lowest validation ``metric``: kNC error for cluster losses, soft-kNN error
    otherwise, as in the paper), loadable with ``magnetdml train --config``.
    """
    base = base.validate()
    check_int("trials", trials, minimum=1)
    check_int("seed", seed, minimum=0)
    if base.data.val_fraction <= 0:
        raise ValueError("data.val_fraction must be > 0 for a search (trials are scored on the "
                         f"validation split); got {base.data.val_fraction}; e.g. 0.1")
    space = space or SearchSpace(base.loss.name)
    if space.loss != base.loss.name:
        raise ValueError(f"the search space is for loss {space.loss!r} but the config trains "
                         f"{base.loss.name!r}; build SearchSpace({base.loss.name!r})")
    metric = metric or ("knc_error" if "clusters_per_class" in space.params else "knn_error")
    check_choice("metric", metric, METRICS)
    out = Path(out)
    base = dataclasses.replace(base, out=None)
    _check_search_file(out, {"seed": seed, "metric": metric, "space": space.describe(),
                             "base": config_to_dict(base)})
    from .training.setup import load_splits
    num_classes = len(np.unique(load_splits(base).train.labels))
    rows = []
    for i in range(trials):
        params = space.sample(np.random.default_rng([seed, i]), num_classes)
        config = apply_overrides(base, {**params, "out": str(out / f"trial_{i:03d}")})
        rows.append(_run_trial(i, config, params, progress, log))
        if len(rows) == min(trials, FAIL_FAST) and all(r["status"] != "ok" for r in rows):
            # a broken base config, not unlucky draws: stop, and let a rerun retry them
            for j in range(len(rows)):
                (out / f"trial_{j:03d}" / VAL_METRICS).unlink(missing_ok=True)
            raise ValueError(f"the first {len(rows)} trial(s) all failed; the first: "
                             f"{rows[0]['status']}")
    finished = [r for r in rows if r["status"] == "ok"]
    best = min(finished, key=lambda r: (r[f"val_{metric}"], r["trial"]))
    best_config = apply_overrides(base, {p.field: best[p.field]
                                         for p in space.params.values()})
    _write_table(out / "trials.csv", rows)
    header = (f"# magnetdml search: best of {len(finished)} trial(s) by validation {metric} "
              f"= {best[f'val_{metric}']:.4f} (trial {best['trial']}, seed {seed}).\n"
              "# Train on it: magnetdml train --config best_config.yaml --out RUN "
              "(add --data.val_fraction 0 to train on the validation split too).\n")
    data = config_to_dict(best_config)
    data.pop("out")
    (out / "best_config.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return SearchResult(out, rows, best, best_config)


def evaluate_run(run_dir: str | Path, split: str = "val", *,
                 test_time_augment: int | None = None) -> dict[str, float]:
    """kNC and soft-kNN errors of a finished run's final model on ``split`` (``"val"``,
    ``"test"`` or ``"unseen"``), exactly as the trainer scores the test split (paper §3.3):
    queries embedded with the run's test-time averaging (or ``test_time_augment`` copies
    when given; 0 = none), references = the training set's
    embeddings, the checkpoint's cluster index and ``sigma^2`` (losses without an index get
    one fitted now, with ``sigma^2 = sum ||r - mu(r)||^2 / (N - 1)``)."""
    import torch

    from .evaluation import KNearestClusters, evaluate
    from .training.config_io import load_config_file
    from .training.embed import embed_dataset
    from .training.run_dir import CONFIG, RunDir
    from .training.setup import load_splits, make_index, make_model

    run = RunDir(Path(run_dir))
    if not run.has_checkpoint():
        raise ValueError(f"run folder {str(run.path)!r} has no {run.checkpoint_path.name}; "
                         "train it first")
    config = load_config_file(run.path / CONFIG).validate()
    splits = load_splits(config)
    dataset = getattr(splits, check_choice("split", split, ("val", "test", "unseen")))
    if dataset is None:
        raise ValueError(f"run {str(run.path)!r} has no {split} split; train it with "
                         f"{'--data.val_fraction' if split == 'val' else '--data.unseen_classes'}"
                         " > 0")
    state = run.load_checkpoint()
    name = config.train.device               # "auto": the trainer's choice, cuda if present
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if name == "auto" else name)
    model = make_model(config, splits.input_shape).to(device)
    model.load_state_dict(state["model"])
    augment, copies = None, (config.eval.test_time_augment if test_time_augment is None
                             else check_int("test_time_augment", test_time_augment, minimum=0))
    if copies:
        from .data.augment import RandomRescaleCrop
        generator = torch.Generator(device=device).manual_seed(config.train.seed)
        rescale = RandomRescaleCrop(max_scale=config.data.max_scale)
        augment = lambda x: rescale(x, generator)                      # noqa: E731
    queries = embed_dataset(model, dataset, device=device, augment=augment, copies=copies)
    reference = embed_dataset(model, splits.train, device=device)     # (N, E)
    index, variance = make_index(config), state["variance"]
    if state["index"] is not None:
        index.load_state_dict(state["index"])
    else:
        index.fit(reference, splits.train.labels)
        residual = (reference - index.centroids_[index.assignments_]).astype(np.float64)
        variance = float((residual ** 2).sum() / max(len(reference) - 1, 1))
    knc = KNearestClusters(neighbours=config.eval.neighbours).fit(index, variance)
    result = {"knc_error": float(np.mean(knc.predict(queries) != dataset.labels))}
    result.update(evaluate(queries, dataset.labels, reference=reference,
                           reference_labels=splits.train.labels, metrics=["knn_error"],
                           k=config.eval.knn_k))
    return result


def _run_trial(i: int, config: Config, params: dict, progress: bool, log) -> dict:
    trial_dir = Path(config.out)
    done = trial_dir / VAL_METRICS
    if done.exists():
        log(f"trial {i}: finished before, skipped")
        return json.loads(done.read_text())
    started = time.perf_counter()
    row = {"trial": i, "status": "ok", **params}
    try:
        if not (trial_dir / SUMMARY).exists():
            train(config, progress=progress)
        val = evaluate_run(trial_dir, "val")
    except (ValueError, RuntimeError, FloatingPointError) as error:   # diverged trials
        row.update({"status": f"failed: {error}".replace("\n", " "),
                    **{f"val_{m}": math.nan for m in METRICS}})
    else:
        row.update({f"val_{m}": val[m] for m in METRICS})
    summary = trial_dir / SUMMARY
    row["train_seconds"] = (json.loads(summary.read_text())["train_seconds"]
                            if summary.exists() else math.nan)
    row["seconds"] = round(time.perf_counter() - started, 3)
    write_json(done, row)
    log(f"trial {i}: {row['status']} " + " ".join(f"{k}={v:.4g}" for k, v in row.items()
                                                  if k.startswith("val_")))
    return row


def _check_search_file(out: Path, settings: dict) -> None:
    """Refuse to mix trials of a different search into ``out``; extending trials is fine."""
    path = out / SEARCH_FILE
    settings = json.loads(json.dumps(settings))
    if path.exists() and json.loads(path.read_text()) != settings:
        raise ValueError(f"search folder {str(out)!r} holds a search with other settings "
                         "(base config, space, seed or metric); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, settings)


def _write_table(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
