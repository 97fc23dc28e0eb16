"""``magnetdml embed``, ``predict`` and ``export``: a trained run on new data.

``embed RUN (--images PATH... | --split S) --out FILE.npz`` writes the embeddings with their
labels (``-1``: unknown), file names and the run's class names; ``predict RUN (--images PATH...
| --split S)`` classifies with the run's kNC (paper §3.3) and prints (``--out F.csv`` or
``.json``: writes) each input's class name, probability and top-k; ``export RUN --out DIR``
writes a ``torch.export`` model and the kNC index for serving without this library.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ._common import Command, add_run_dir, add_run_inputs, load_inputs


def configure_embed(parser: argparse.ArgumentParser) -> None:
    add_run_inputs(parser)
    parser.add_argument("--out", required=True, help="the .npz to write: embeddings (N, E), "
                        "labels (N,), files (N,), class_names (C,)")


def run_embed(args: argparse.Namespace) -> int:
    from ..training.run_dir import atomic_write

    run, data, names, labels = load_inputs(args)
    embeddings = run.embed(data)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out {args.out!r} must end in .npz (numpy's archive)")
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"embeddings": embeddings,
              "labels": np.full(len(names), -1) if labels is None else labels,
              "files": np.asarray(names), "class_names": np.asarray(run.class_names)}
    atomic_write(out, lambda handle: np.savez(handle, **arrays))
    print(f"{len(names)} embeddings of dimension {embeddings.shape[1]} written to {out}")
    return 0


def configure_predict(parser: argparse.ArgumentParser) -> None:
    add_run_inputs(parser)
    parser.add_argument("--top", type=int, default=5, help="classes listed per input")
    parser.add_argument("--out", help="write every row to this .csv or .json (default: print "
                        "the first 20)")


def run_predict(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be >= 1; got {args.top}")
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        raise ValueError(f"--out {args.out!r} must end in .csv or .json")
    run, data, names, labels = load_inputs(args)
    classes, probabilities = run.top_k(data, k=args.top)
    class_names = run.class_names
    rows = []
    for i, name in enumerate(names):
        row = {"input": name, "class": class_names[classes[i, 0]],
               "probability": round(float(probabilities[i, 0]), 6),
               "top": [{"class": class_names[c], "probability": round(float(p), 6)}
                       for c, p in zip(classes[i], probabilities[i], strict=True)]}
        if labels is not None:
            row["true_class"] = class_names[labels[i]]
        rows.append(row)
    if args.out:
        _write(Path(args.out), rows)
    for row in rows[:20] if not args.out else rows[:5]:
        top = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in row["top"])
        truth = f"   (true: {row['true_class']})" if "true_class" in row else ""
        print(f"{row['input']}: {row['class']}   [{top}]{truth}")
    if len(rows) > (5 if args.out else 20):
        print(f"... {len(rows)} inputs in all" + (f"; every row in {args.out}" if args.out
                                                   else "; --out F.csv writes them all"))
    if labels is not None:
        error = float(np.mean(classes[:, 0] != labels))
        print(f"kNC error on these {len(rows)} inputs: {100 * error:.2f}%")
    return 0


def _write(path: Path, rows: list[dict]) -> None:
    from ..training.run_dir import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        atomic_write(path, lambda h: h.write(json.dumps(rows, indent=1).encode()))
        return
    def write_csv(handle) -> None:
        import io
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["input", "class", "probability", "top", *(
            ["true_class"] if "true_class" in rows[0] else [])])
        for row in rows:
            writer.writerow([row["input"], row["class"], row["probability"],
                             "; ".join(f"{t['class']}:{t['probability']}" for t in row["top"]),
                             *([row["true_class"]] if "true_class" in row else [])])
        handle.write(text.getvalue().encode())
    atomic_write(path, write_csv)


def configure_export(parser: argparse.ArgumentParser) -> None:
    add_run_dir(parser)
    parser.add_argument("--out", required=True, help="folder for model.pt2 (a torch.export "
                        "program) and index.npz (centres, labels, lengthscale, preprocessing)")


def run_export(args: argparse.Namespace) -> int:
    from ..training.export import export_run
    from ..training.runs import load_run

    paths = export_run(load_run(args.run_dir), args.out)
    print(f"model: {paths['model']} (torch.export.load(path).module())\n"
          f"kNC index: {paths['index']} (numpy is enough)")
    return 0


EXPORT = Command("export", "export a run for serving: torch.export model + kNC index (.npz)",
                 configure_export, run_export)
EMBED = Command("embed", "embed images or a split with a trained run (writes an .npz)",
                configure_embed, run_embed)
PREDICT = Command("predict", "classify images or a split with a trained run's kNC",
                  configure_predict, run_predict)
