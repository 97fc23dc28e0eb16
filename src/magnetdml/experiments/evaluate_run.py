"""Score a finished run's final model on one split, exactly as the trainer scores the test split
(kNC and soft-kNN errors; paper §3.3): what older searches scored their trials with, and what
``benchmarks/protocol_runs.py`` re-scores runs with (with or without test-time averaging)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import check_choice, check_int


def evaluate_run(run_dir: str | Path, split: str = "val", *,
                 test_time_augment: int | None = None) -> dict[str, float]:
    """kNC and soft-kNN errors of a finished run's final model on ``split`` (``"val"``,
    ``"test"`` or ``"unseen"``), exactly as the trainer scores the test split (paper §3.3):
    queries embedded with the run's test-time averaging (or ``test_time_augment`` copies
    when given; 0 = none), references = the training set's
    embeddings, the checkpoint's cluster index and ``sigma^2`` (losses without an index get
    one fitted now, with ``sigma^2 = sum ||r - mu(r)||^2 / (N - 1)``)."""
    import torch

    from ..evaluation import KNearestClusters, evaluate
    from ..training.config_io import load_config_file
    from ..training.embed import embed_dataset
    from ..training.run_dir import CONFIG, RunDir
    from ..training.setup import load_splits, make_index, make_model

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
        from ..data.augment import RandomRescaleCrop
        generator = torch.Generator(device=device).manual_seed(config.train.seed)
        rescale = RandomRescaleCrop(max_scale=config.data.max_scale)
        augment = lambda x: rescale(x, generator)                      # noqa: E731
    queries = embed_dataset(model, dataset, device=device, augment=augment, copies=copies)
    reference = embed_dataset(model, splits.train, device=device)     # (N, E)
    index, variance = make_index(config), state["variance"]
    if state["index"] is not None:
        index.load_state_dict(state["index"])
        variance = config.loss.knc_variance(variance)
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
