"""``magnetdml embed``, ``predict`` and ``export``: a trained run on new data.

``embed RUN INPUTS --out FILE.npz`` writes the embeddings with their labels (``-1``: unknown),
file names and class names (``.npy``: the embeddings alone); ``predict RUN INPUTS`` classifies
with the run's kNC (paper §3.3) and prints (``--out F.csv`` or ``.json``: writes) each input's
class name, probability and top-k; ``export RUN --out DIR`` writes a ``torch.export`` model
and the kNC index for serving without this library. INPUTS are ``--images PATH...`` (files or
folders), ``--split S`` (of the run's data) or ``--dataset NAME --data-dir DIR`` (all of it,
or its ``--split``): see :func:`._common.add_run_inputs`."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ._common import Command, add_run_dir, add_run_inputs, load_inputs


def configure_embed(parser: argparse.ArgumentParser) -> None:
    add_run_inputs(parser)
    parser.add_argument(
        "--out",
        required=True,
        help="the file to write: .npz (embeddings "
        "(N, E), labels (N,) as ids into class_names (-1: unknown), files (N,), "
        "class_names) or .npy (the embeddings alone)",
    )


def run_embed(args: argparse.Namespace) -> int:
    from ..training.atomic_files import atomic_write

    out = Path(args.out)
    if out.suffix not in (".npz", ".npy"):
        raise ValueError(
            f"--out {args.out!r} must end in .npz (embeddings, labels, files, "
            "class names) or .npy (the embeddings alone)"
        )
    inputs = load_inputs(args)
    embeddings = inputs.run.embed(inputs.data)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        atomic_write(out, lambda handle: np.save(handle, embeddings))
    else:
        labels = np.full(len(inputs.names), -1) if inputs.labels is None else inputs.labels
        names = inputs.class_names or inputs.run.class_names
        arrays = {
            "embeddings": embeddings,
            "labels": labels,
            "files": np.asarray(inputs.names),
            "class_names": np.asarray(names),
        }
        atomic_write(out, lambda handle: np.savez(handle, **arrays))
    print(f"{len(inputs.names)} embeddings of dimension {embeddings.shape[1]} written to {out}")
    return 0


def configure_predict(parser: argparse.ArgumentParser) -> None:
    add_run_inputs(parser)
    parser.add_argument("--top", type=int, default=5, help="classes listed per input")
    parser.add_argument(
        "--out", help="write every row to this .csv or .json (default: print the first 20)"
    )


def run_predict(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be >= 1; got {args.top}")
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise ValueError(f"--out {args.out!r} must end in .csv or .json")
    inputs = load_inputs(args)
    run, names = inputs.run, inputs.names
    labels = inputs.run_labels()  # the run's class ids; -1: a class it never saw
    classes, probabilities = run.top_k(inputs.data, k=args.top)
    class_names = run.class_names
    rows = []
    for i, name in enumerate(names):
        row = {
            "input": name,
            "class": class_names[classes[i, 0]],
            "probability": round(float(probabilities[i, 0]), 6),
            "top": [
                {"class": class_names[c], "probability": round(float(p), 6)}
                for c, p in zip(classes[i], probabilities[i], strict=True)
            ],
        }
        if labels is not None:
            row["true_class"] = inputs.class_names[inputs.labels[i]]
        rows.append(row)
    if args.out:
        _write(Path(args.out), rows)
    for row in rows[:20] if not args.out else rows[:5]:
        top = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in row["top"])
        truth = f"   (true: {row['true_class']})" if "true_class" in row else ""
        print(f"{row['input']}: {row['class']}   [{top}]{truth}")
    if len(rows) > (5 if args.out else 20):
        print(
            f"... {len(rows)} inputs in all"
            + (f"; every row in {args.out}" if args.out else "; --out F.csv writes them all")
        )
    if labels is not None and (labels >= 0).any():
        known = labels >= 0
        error = float(np.mean(classes[known, 0] != labels[known]))
        print(
            f"kNC error on these {int(known.sum())} inputs: {100 * error:.2f}%"
            + (
                ""
                if known.all()
                else f" ({int((~known).sum())} inputs of classes the run never saw left out)"
            )
        )
    return 0


def _write(path: Path, rows: list[dict]) -> None:
    from ..training.atomic_files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        atomic_write(path, lambda h: h.write(json.dumps(rows, indent=1).encode()))
        return

    def write_csv(handle) -> None:
        import io

        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(
            [
                "input",
                "class",
                "probability",
                "top",
                *(["true_class"] if "true_class" in rows[0] else []),
            ]
        )
        for row in rows:
            writer.writerow(
                [
                    row["input"],
                    row["class"],
                    row["probability"],
                    "; ".join(f"{t['class']}:{t['probability']}" for t in row["top"]),
                    *([row["true_class"]] if "true_class" in row else []),
                ]
            )
        handle.write(text.getvalue().encode())

    atomic_write(path, write_csv)


def configure_export(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)
    parser.add_argument(
        "--out",
        required=True,
        help="folder for model.pt2 (a torch.export "
        "program) and index.npz (centres, labels, lengthscale, preprocessing)",
    )


def run_export(args: argparse.Namespace) -> int:
    from ..training.export import export_run
    from ..training.runs import load_run

    paths = export_run(load_run(args.run_dir), args.out)
    print(
        f"model: {paths['model']} (torch.export.load(path).module())\n"
        f"kNC index: {paths['index']} (numpy is enough)"
    )
    return 0


EXPORT = Command(
    "export",
    "export a run for serving: torch.export model + kNC index (.npz)",
    configure_export,
    run_export,
)
EMBED = Command(
    "embed",
    "embed images or a split with a trained run (writes an .npz)",
    configure_embed,
    run_embed,
)
PREDICT = Command(
    "predict", "classify images or a split with a trained run's kNC", configure_predict, run_predict
)
