"""``magnetdml retrieve`` and ``magnetdml cluster``: look at what a trained embedding does.

``retrieve RUN INPUTS [--k 10] [--out grid.png]`` lists each query's
nearest training examples (class, distance) and draws them in one picture grid.
``cluster RUN INPUTS (--k N | --auto) --out DIR`` groups the inputs by k-means++ on their
embeddings (seed 003: clustering classes nobody labelled), writes ``assignments.csv`` and one
contact sheet per cluster, and scores NMI / F1 / Recall@K when the inputs have labels (a split,
or ``--dataset``), and NMI / F1 against every level of an image tree above the classes (e.g.
``parent``: the alphabet of a character). INPUTS: ``--images PATH...``, ``--split S`` or
``--dataset NAME --data-dir DIR`` (see ``cli._common.add_run_inputs``).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from ._common import Command, add_run_inputs, load_inputs

SHEET = 36  # thumbnails per cluster's contact sheet
#: Bounds of retrieve's picture grid (rows x columns of thumbnails): matplotlib draws each
#: thumbnail as an artist, ~0.01 s each, so 100,000 rows ran for a quarter of an hour.
MAX_ROWS, MAX_COLUMNS = 100, 50


def configure_retrieve(parser: argparse.ArgumentParser) -> None:
    add_run_inputs(parser)
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--limit", type=int, default=8, help="queries drawn (all are listed)")
    parser.add_argument("--out", help="the picture grid to write (.png; default: none)")


def run_retrieve(args: argparse.Namespace) -> int:
    if args.k < 1 or args.limit < 1:
        raise ValueError(f"--k and --limit must be >= 1; got {args.k} and {args.limit}")
    if args.out and args.limit > MAX_ROWS:
        raise ValueError(
            f"--limit must be <= {MAX_ROWS} (the rows of queries the picture "
            f"draws); got {args.limit}: every query is listed anyway, and "
            "--out with a smaller --limit draws the first ones"
        )
    if args.out and args.k > MAX_COLUMNS:
        raise ValueError(
            f"--k must be <= {MAX_COLUMNS} with --out (the neighbours the picture "
            f"draws per query); got {args.k}"
        )
    if args.out and Path(args.out).suffix != ".png":
        raise ValueError(f"--out {args.out!r} must end in .png")
    inputs = load_inputs(args)
    run, data, names = inputs.run, inputs.data, inputs.names
    distances, indices = run.kneighbors(data, k=args.k)
    train, classes = run.splits.train, run.class_names
    for name, row_d, row_i in zip(names[:20], distances, indices, strict=False):
        found = ", ".join(
            f"{classes[train.labels[i]]} ({d:.3g})"
            for d, i in zip(row_d[:5], row_i[:5], strict=True)
        )
        print(f"{name}: {found}{', ...' if args.k > 5 else ''}")
    if args.out:
        from ..reporting.image_grid import save_image_grid

        shown = range(min(args.limit, len(names)))
        rows = [[data.raw([q])[0], *train.raw(indices[q])] for q in shown]
        captions = [
            [
                f"query {q}",
                *(
                    f"{classes[train.labels[i]]}\n{d:.3g}"
                    for d, i in zip(distances[q], indices[q], strict=True)
                ),
            ]
            for q in shown
        ]
        save_image_grid(
            rows,
            args.out,
            captions=captions,
            pixel_max=_pixel_max(train),
            title=f"{args.k} nearest training examples (distance)",
        )
        print(f"picture: {args.out}")
    return 0


def configure_cluster(parser: argparse.ArgumentParser) -> None:
    add_run_inputs(parser)
    count = parser.add_mutually_exclusive_group(required=True)
    count.add_argument("--k", type=int, help="number of clusters")
    count.add_argument(
        "--auto",
        action="store_true",
        help="choose the number of clusters by the silhouette of k-means over 2..min(50, N/2)",
    )
    parser.add_argument(
        "--out", required=True, help="folder for assignments.csv and cluster_NNN.png contact sheets"
    )


def choose_clusters(embeddings: np.ndarray, seed: int = 0, largest: int = 50) -> int:
    """The number of k-means clusters with the best silhouette (cosine-free, Euclidean)."""
    from sklearn.metrics import silhouette_score

    from ..evaluation.clustering import cluster_assignments

    top = min(largest, len(embeddings) // 2)
    if top < 2:
        raise ValueError(
            f"--auto needs at least 4 inputs to choose a number of clusters; got "
            f"{len(embeddings)}: pass --k"
        )
    sample = min(len(embeddings), 5000)  # silhouette is quadratic in the inputs
    scores = {
        k: silhouette_score(
            embeddings,
            cluster_assignments(embeddings, k, seed=seed),
            sample_size=sample,
            random_state=seed,
        )
        for k in range(2, top + 1)
    }
    return max(scores, key=scores.get)


def run_cluster(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate
    from ..evaluation.clustering import cluster_assignments, pairwise_f1
    from ..reporting.image_grid import save_image_grid
    from ..training.atomic_files import atomic_write

    inputs = load_inputs(args)
    run, data, names, labels = inputs.run, inputs.data, inputs.names, inputs.labels
    embeddings = run.embed(data)
    k = choose_clusters(embeddings, run.config.train.seed) if args.auto else args.k
    if k < 1 or k > len(names):
        raise ValueError(f"--k must be between 1 and the {len(names)} inputs; got {k}")
    assignments = cluster_assignments(embeddings, k, seed=run.config.train.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["input", "cluster", *(["class"] if labels is not None else [])])
    for i, name in enumerate(names):
        writer.writerow(
            [
                name,
                int(assignments[i]),
                *([inputs.class_names[labels[i]]] if labels is not None else []),
            ]
        )
    atomic_write(out / "assignments.csv", lambda handle: handle.write(text.getvalue().encode()))
    for cluster in range(k):
        members = np.flatnonzero(assignments == cluster)[:SHEET]
        if not members.size:
            continue
        images = list(data.raw(members))
        width = int(np.ceil(np.sqrt(len(images))))
        rows = [images[i : i + width] for i in range(0, len(images), width)]
        save_image_grid(
            rows,
            out / f"cluster_{cluster:03d}.png",
            pixel_max=_pixel_max(data),
            title=f"cluster {cluster}: {int((assignments == cluster).sum())} inputs",
        )
    sizes = np.bincount(assignments, minlength=k)
    print(
        f"{len(names)} inputs in {k} clusters (sizes {sizes.min()}..{sizes.max()}); "
        f"{out / 'assignments.csv'} and {k} contact sheets in {out}"
    )
    if labels is not None:  # these clusters against the labels, and retrieval
        from sklearn.metrics import normalized_mutual_info_score

        recall = evaluate(embeddings, labels, metrics=["recall_at_1", "recall_at_4"])
        print(
            f"against the labels: nmi {normalized_mutual_info_score(labels, assignments):.4f}"
            f", f1 {pairwise_f1(labels, assignments):.4f}, recall_at_1 "
            f"{recall['recall_at_1']:.4f}, recall_at_4 {recall['recall_at_4']:.4f}"
        )
        for level, values in inputs.attributes.items():  # the folders above the classes
            groups = len(np.unique(values))
            print(
                f"against {level} ({groups} groups): nmi "
                f"{normalized_mutual_info_score(values, assignments):.4f}, f1 "
                f"{pairwise_f1(values, assignments):.4f}"
            )
    return 0


def _pixel_max(data) -> float:
    """The range of ``data.raw``'s pixels (digits: 16; image files: 255)."""
    return float(getattr(data, "pixel_max", 255.0))


RETRIEVE = Command(
    "retrieve",
    "nearest training examples of images or a split (picture grid)",
    configure_retrieve,
    run_retrieve,
)
CLUSTER = Command(
    "cluster",
    "cluster images of unknown classes with a trained embedding",
    configure_cluster,
    run_cluster,
)
