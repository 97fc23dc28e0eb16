"""``omniglot``: 1,623 handwritten characters from 50 alphabets, 20 drawings each.

Sources in ``data_dir`` (or ``data_dir`` itself being the ``.npz``):

* ``omniglot_background.npz``: ``images`` uint8 (N, 105, 105) with 255 background,
  ``labels`` (N,), ``alphabet`` (C,), ``character`` (C,) (the staged copy in shared/data);
* the official layout ``images_background/<alphabet>/<character>/*.png`` as a folder or as
  ``images_background.zip``; with ``evaluation=True`` also the evaluation set (20 more
  alphabets: ``images_evaluation`` as a folder or zip, or ``omniglot_evaluation.npz`` laid out
  as the background npz), whose classes all go to ``unseen``.

Images are inverted so strokes are bright on 0 (``invert=True``) and resized to ``size`` x
``size`` (default 28, as in the few-shot literature) with antialiased bilinear interpolation in
batched torch; the result is cached. With 20 images per class there is no official test split:
``test`` is a seeded per-class hold-out of ``test_per_class`` drawings. ``unseen_alphabets``
(a fraction or a list of alphabet names / ids) holds out whole alphabets: the class-disjoint
split by alphabet. Attribute ``alphabet``: (N,) alphabet id (names in ``info["alphabets"]``).

Every character was drawn once by each of 20 people; a drawing's **drawer** is its number in
the character's folder (the ``_NN`` of ``0709_NN.png``, 1..20; in the npz, the position among
the class's 20 consecutive images). ``test_drawers`` / ``val_drawers`` (lists of drawer numbers)
split by drawer instead: the same drawers' drawings of every character are held out for the test
split (replacing the random ``test_per_class`` hold-out) and for the dataset's own validation
split. ``alphabets`` (names or ids) keeps only those alphabets' characters, relabelled 0..C-1 in
their original order: a fine-grained subset of the background set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int
from ._cache import cached_arrays, source_key
from ._files import FileTree, decode_tree
from .base import NORMALISATION, ArrayDataset
from .loading import DATASETS, require_dir
from .splits import STREAM_TEST, DataPool, resolve_classes, stratified_holdout

STREAM_ALPHABETS = 4  # its own random stream (see splits.py)


def resize_batched(images: np.ndarray, size: int, chunk: int = 2048) -> np.ndarray:
    """Resize uint8 ``(N, H, W)`` to ``(N, size, size)``, antialiased, in bounded-memory chunks."""
    out = np.empty((images.shape[0], size, size), dtype=np.uint8)
    for start in range(0, images.shape[0], chunk):
        x = torch.from_numpy(images[start : start + chunk]).unsqueeze(1).float()  # (b, 1, H, W)
        y = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + chunk] = y.round_().clamp_(0, 255).squeeze(1).to(torch.uint8).numpy()
    return out


def _read_tree(source: Path) -> dict[str, np.ndarray]:
    """Decode an official ``images_*`` folder or zip into npz-like arrays."""
    tree = FileTree(source)
    names = [n for n in tree.names() if len(n.split("/")) >= 3]
    if not names:
        raise ValueError(f"{source} holds no <alphabet>/<character>/<image>.png files")
    keys = [tuple(n.split("/")[-3:-1]) for n in names]  # (alphabet, character)
    classes = sorted(set(keys))
    lookup = {k: i for i, k in enumerate(classes)}
    return {
        "images": decode_tree(tree, names, "L"),
        "labels": np.array([lookup[k] for k in keys], dtype=np.int64),
        "alphabet": np.array([a for a, _ in classes]),
        "character": np.array([c for _, c in classes]),
    }


def _find(root: Path, part: str) -> Path | None:
    for candidate in (
        root / f"images_{part}",
        root / f"images_{part}.zip",
        root / f"omniglot_{part}.npz",
    ):
        if candidate.exists():
            return candidate
    return None


def _load_part(source: Path, size: int, invert: bool, cache_dir, use_cache: bool):
    def build() -> dict[str, np.ndarray]:
        if source.suffix == ".npz":
            with np.load(source, allow_pickle=False) as z:
                missing = [
                    k for k in ("images", "labels", "alphabet", "character") if k not in z.files
                ]
                if missing:
                    raise ValueError(
                        f"{source} lacks the arrays {missing} (it holds "
                        f"{z.files}); an Omniglot npz holds images, labels, "
                        "alphabet and character, as the staged copy does"
                    )
                raw = {k: z[k] for k in ("images", "labels", "alphabet", "character")}
        else:
            raw = _read_tree(source)
        images = raw["images"]
        if images.dtype != np.uint8:  # a cast would squash 0..1 floats to 0 and 1
            raise ValueError(
                f"{source}: images must be uint8 grey levels 0..255 (255 the "
                f"background), as in the official PNGs; got {images.dtype} in "
                f"[{images.min():g}, {images.max():g}]; convert them (e.g. "
                "np.rint(x * 255).astype(np.uint8) for 0..1 floats)"
            )
        if invert:
            images = 255 - images  # strokes bright, background 0
        if images.shape[1:] != (size, size):
            images = resize_batched(images, size)
        return dict(raw, images=images, labels=raw["labels"].astype(np.int64))

    key = {"source": source_key(source), "size": size, "invert": invert}
    return cached_arrays("omniglot", key, build, cache_dir=cache_dir, use_cache=use_cache)


@DATASETS.register("omniglot")
def load_omniglot(
    data_dir=None,
    *,
    seed: int = 0,
    size: int = 28,
    invert: bool = True,
    test_per_class: int = 5,
    unseen_alphabets=None,
    evaluation: bool = False,
    alphabets=None,
    test_drawers=None,
    val_drawers=None,
    cache_dir=None,
    use_cache: bool = True,
) -> DataPool:
    """Omniglot as uint8 ``(N, 1, size, size)``; see the module docstring for the options."""
    size = check_int("size", size, minimum=4)
    test_per_class = check_int(
        "test_per_class",
        test_per_class,
        minimum=0,
        fix="the drawings per character held out for the test split",
    )
    root = require_dir("omniglot", data_dir, "omniglot_background.npz or images_background/")
    if root.is_file():
        background, root = root, root.parent
    else:
        background = next(
            (
                p
                for p in (root / "omniglot_background.npz", _find(root, "background"))
                if p and p.exists()
            ),
            None,
        )
    if background is None:
        raise FileNotFoundError(
            f"no Omniglot data in {root}: expected omniglot_background.npz"
            " or images_background/ (or .zip) from "
            "https://github.com/brendenlake/omniglot"
        )
    parts = [background]
    if evaluation:
        evaluation_src = _find(root, "evaluation")
        if evaluation_src is None:
            raise FileNotFoundError(
                f"evaluation=True needs images_evaluation/ (or .zip, or "
                f"omniglot_evaluation.npz) in {root}; "
                "omniglot_background.npz holds only the background set"
            )
        parts.append(evaluation_src)
    loaded = [_load_part(p, size, invert, cache_dir, use_cache) for p in parts]
    arrays = [a for a, _ in loaded]
    offsets = np.cumsum([0] + [a["alphabet"].shape[0] for a in arrays])
    labels = np.concatenate([a["labels"] + o for a, o in zip(arrays, offsets[:-1], strict=True)])
    class_alphabet = np.concatenate([a["alphabet"] for a in arrays]).astype(str)
    characters = np.concatenate([a["character"] for a in arrays]).astype(str)
    alphabet_names, class_alpha_id = np.unique(class_alphabet, return_inverse=True)
    images = np.concatenate([a["images"] for a in arrays])[:, None]  # (N, 1, size, size)

    forced = np.arange(offsets[1], offsets[-1])  # evaluation classes: unseen
    if unseen_alphabets is not None:
        chosen = resolve_classes(
            "unseen_alphabets",
            unseen_alphabets,
            list(np.unique(class_alphabet[: offsets[1]])),
            np.random.default_rng([seed, STREAM_ALPHABETS]),
        )
        names = np.unique(class_alphabet[: offsets[1]])[chosen]
        forced = np.union1d(forced, np.flatnonzero(np.isin(class_alphabet, names)))
    drawer = _drawers(labels)
    if test_drawers is None:
        is_test = stratified_holdout(
            labels, count=test_per_class, rng=np.random.default_rng([seed, STREAM_TEST])
        )
    else:
        is_test = np.isin(drawer, _check_drawers("test_drawers", test_drawers))
    is_val = None
    if val_drawers is not None:
        is_val = np.isin(drawer, _check_drawers("val_drawers", val_drawers)) & ~is_test
        if test_drawers is not None and set(val_drawers) & set(test_drawers):
            raise ValueError(
                f"val_drawers {list(val_drawers)} and test_drawers "
                f"{list(test_drawers)} share drawers: a drawing is either "
                "validation or test; give disjoint lists"
            )
    class_names = np.array([f"{a}/{c}" for a, c in zip(class_alphabet, characters, strict=True)])
    if alphabets is not None:  # a subset of the characters, relabelled in their order
        present = np.unique(class_alphabet[: offsets[1]])
        chosen = present[alphabets_by_name(alphabets, present.tolist())]
        kept_classes = np.flatnonzero(np.isin(class_alphabet, chosen))
        keep_rows = np.isin(labels, kept_classes)
        relabel = np.full(class_names.shape[0], -1, dtype=np.int64)
        relabel[kept_classes] = np.arange(kept_classes.size)
        forced = relabel[np.intersect1d(forced, kept_classes)]
        class_alpha_id, class_names = class_alpha_id[kept_classes], class_names[kept_classes]
        labels = relabel[labels[keep_rows]]
        images, is_test = images[keep_rows], is_test[keep_rows]
        is_val = None if is_val is None else is_val[keep_rows]
    mean, std = NORMALISATION["omniglot"]
    if not invert:
        mean = tuple(1.0 - m for m in mean)
    dataset = ArrayDataset(
        images, labels, attributes={"alphabet": class_alpha_id[labels]}, mean=mean, std=std
    )
    return DataPool(
        dataset,
        is_test,
        class_names.tolist(),
        (1, size, size),
        unseen=forced.astype(np.int64),
        is_val=is_val,
        info={
            "source": [str(p) for p in parts],
            "alphabets": alphabet_names.tolist(),
            "cache_hit": all(hit for _, hit in loaded),
        },
    )


DRAWERS = 20  # every Omniglot character was drawn by 20 people


def _drawers(labels: np.ndarray) -> np.ndarray:
    """(N,) the drawer number (1..20) of each drawing: its rank among its class's drawings in
    storage order (the sorted ``_NN.png`` file names; the npz keeps that order)."""
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    drawer = np.empty(labels.shape, dtype=np.int64)
    drawer[order] = np.arange(labels.size) - np.repeat(starts, counts) + 1
    return drawer


def _check_drawers(name: str, drawers) -> list[int]:
    if isinstance(drawers, (str, bytes)) or not hasattr(drawers, "__iter__"):
        raise TypeError(
            f"{name} must be a list of drawer numbers 1..{DRAWERS}, e.g. "
            f"[16, 17, 18, 19, 20]; got {drawers!r}"
        )
    checked = [
        check_int(f"{name} entry", d, minimum=1, fix=f"drawers are 1..{DRAWERS}") for d in drawers
    ]
    if any(d > DRAWERS for d in checked):
        raise ValueError(
            f"{name} {list(drawers)}: Omniglot has drawers 1..{DRAWERS} only; "
            f"give numbers in that range"
        )
    if not checked or len(checked) >= DRAWERS:
        raise ValueError(
            f"{name} {list(drawers)} must name between 1 and {DRAWERS - 1} of the "
            f"{DRAWERS} drawers, so that some drawings are left to train on"
        )
    return checked


def alphabets_by_name(alphabets, names: list[str]) -> np.ndarray:
    """The ids (into the sorted ``names``) of ``alphabets``: a list of names or ids."""
    if (
        isinstance(alphabets, (str, bytes))
        or not hasattr(alphabets, "__iter__")
        or not len(alphabets)
    ):
        raise TypeError(
            f"alphabets must be a non-empty list of alphabet names or ids, e.g. "
            f"[{names[0]}]; got {alphabets!r}"
        )
    return resolve_classes("alphabets", list(alphabets), names, np.random.default_rng(0))
