"""Your own image tree, end to end: the commands and real output of ``docs/own-images.md``.

Writes Omniglot's handwritten characters as a user would keep them, a tree of 1-bit PNGs
``omniglot-tree/<alphabet>/<character>/<drawing>.png`` (Latin, Greek, Korean: 90 characters,
19 drawings each), a second tree of two alphabets training never sees (Hebrew, Braille), and a
folder ``new/`` of three held-out drawings (file names with spaces); then trains on the leaf
folders and runs every inference command, from a sibling folder (paths ``../...``), writing
what each printed to ``WORKDIR/transcript.txt``::

    python examples/own_images.py ../shared/data/omniglot/omniglot_background.npz /tmp/own
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TRAINED = ("Latin", "Greek", "Korean")
UNSEEN = ("Hebrew", "Braille")
NEW = (("Latin", "character05"), ("Greek", "character10"), ("Korean", "character20"))
EPOCHS = 30

COMMANDS = [
    [
        "train",
        "--dataset",
        "image-folder",
        "--data-dir",
        "../omniglot-tree",
        "--data.options",
        "{class_level: leaf, size: 28}",
        "--model.backbone",
        "small-cnn",
        "--index.clusters_per_class",
        "2",
        "--epochs",
        str(EPOCHS),
        "--train.threads",
        "1",
        "--quiet",
        "--out",
        "runs/tree",
    ],
    ["predict", "runs/tree", "--images", "../new/", "--top", "3"],
    [
        "evaluate",
        "runs/tree",
        "--metrics",
        "knc_error,nmi,f1,concentration_at_4,chance_concentration",
    ],
    [
        "cluster",
        "runs/tree",
        "--dataset",
        "image-folder",
        "--data-dir",
        "../unseen-tree",
        "--k",
        "48",
        "--out",
        "clusters/",
    ],
    [
        "retrieve",
        "runs/tree",
        "--images",
        "../new/Greek drawing.png",
        "--k",
        "5",
        "--out",
        "neighbours.png",
    ],
    [
        "embed",
        "runs/tree",
        "--dataset",
        "image-folder",
        "--data-dir",
        "../unseen-tree",
        "--out",
        "unseen.npz",
    ],
    ["export", "runs/tree", "--out", "served/"],
]


def write_trees(npz: Path, work: Path) -> None:
    with np.load(npz, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
        alphabet, character = data["alphabet"], data["character"]
    for c in range(len(alphabet)):
        a, ch = str(alphabet[c]), str(character[c])
        if a not in TRAINED + UNSEEN:
            continue
        drawings = images[labels == c]  # (20, 105, 105), 255 = paper
        folder = work / ("omniglot-tree" if a in TRAINED else "unseen-tree") / a / ch
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(drawings[:19]):
            Image.fromarray(pixels).convert("1").save(folder / f"{i:02d}.png")
        if (a, ch) in NEW:  # the 20th drawing: held out
            (work / "new").mkdir(exist_ok=True)
            Image.fromarray(drawings[19]).convert("1").save(work / "new" / f"{a} drawing.png")


def main(npz: str, workdir: str) -> None:
    work = Path(workdir)
    write_trees(Path(npz), work)
    (work / "work").mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lines = []
    for argv in COMMANDS:
        done = subprocess.run(
            [sys.executable, "-m", "magnetdml", *argv],
            cwd=work / "work",
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        shown = " ".join(f'"{a}"' if " " in a or "{" in a else a for a in argv)
        lines += [f"$ magnetdml {shown}", done.stderr.rstrip(), done.stdout.rstrip(), ""]
        if done.returncode:
            break
        if argv[0] == "train":  # how the run reads folders, as its config.json keeps it
            config = json.loads((work / "work" / "runs" / "tree" / "config.json").read_text())
            lines += [f"# runs/tree/config.json data.options: {config['data']['options']}", ""]
    (work / "transcript.txt").write_text("\n".join(line for line in lines if line) + "\n")
    print((work / "transcript.txt").read_text())


if __name__ == "__main__":
    main(*sys.argv[1:3])
