"""Bad input, as a user types it: every case ends in one line that names the value and the rule
(exit status 2), never a traceback, and leaves nothing that blocks the corrected command."""

from __future__ import annotations

import numpy as np
import pytest

from magnetdml.cli import main

# (argv, a phrase the one line must hold). RUN is a finished tiny run, FILE a plain file,
# NOWHERE a path that does not exist, OUT a fresh folder.
CASES = [
    # --- config values
    (["train", "--loss.alpha", "nan"], "loss.alpha must be finite"),
    (["train", "--loss.scale", "0"], "loss.scale"),
    (["train", "--loss.scale", "-2"], "loss.scale"),
    (["train", "--train.lr", "abc"], "train.lr"),
    (["train", "--train.epochs", "0"], "train.epochs must be >= 1"),
    (["train", "--train.epochs", "2.5"], "train.epochs"),
    (["train", "--train.threads", "-2"], "train.threads must be >= 0"),
    (["train", "--train.patience", "-1"], "train.patience must be >= 0"),
    (["train", "--train.optimizer", "rmsprop"], "train.optimizer"),
    (["train", "--train.device", "tpu"], "train.device"),
    (["train", "--train.warm_start_epochs", "-1"], "train.warm_start_epochs must be >= 0"),
    (["train", "--train.momentum", "inf"], "train.momentum"),
    (["train", "--data.name", "imagenet"], "data.name"),
    (["train", "--dataset", "mnsit"], "mnsit"),
    (["train", "--data.val_fraction", "0.95"], "data.val_fraction must be <= 0.9"),
    (["train", "--data.unseen_classes", "-0.1"], "data.unseen_classes"),
    (["train", "--data.max_scale", "2"], "data.max_scale"),
    (["train", "--data.options", "[1, 2]"], "data.options must be a YAML mapping"),
    (["train", "--data.options", "{unknown_option: 1}"], "unknown_option"),
    (["train", "--model.backbone", "vgg99"], "model.backbone"),
    (["train", "--model.embedding_dim", "1"], "model.embedding_dim must be >= 2"),
    (["train", "--model.options", "{nonsense: 3}"], "nonsense"),
    (["train", "--model.init_from", "NOWHERE"], "is not a run folder with a checkpoint.pt"),
    (["train", "--model.init_from", "FILE"], "cannot be read as a checkpoint"),
    (["train", "--loss.name", "arcface"], "loss.name"),
    (["train", "--loss.margin", "-1"], "loss.margin must be >= 0"),
    (["train", "--loss.miner", "hardest"], "loss.miner"),
    (["train", "--loss.triplet_variant", "cubic"], "loss.triplet_variant"),
    (["train", "--loss.impostor_fraction", "2"], "loss.impostor_fraction"),
    (["train", "--index.clusters_per_class", "0"], "index.clusters_per_class"),
    (["train", "--index.method", "dbscan"], "index.method"),
    (["train", "--sampler.examples_per_cluster", "1"], "sampler.examples_per_cluster must be"),
    (["train", "--sampler.clusters_per_batch", "1"], "sampler.clusters_per_batch"),
    (["train", "--sampler.batches", "random"], "sampler.batches"),
    (["train", "--sampler.impostors", "farthest"], "sampler.impostors"),
    (["train", "--eval.neighbours", "0"], "eval.neighbours"),
    (["train", "--eval.knn_k", "0"], "eval.knn_k"),
    (["train", "--eval.every", "-1"], "eval.every"),
    (["train", "--config", "NOWHERE"], "does not exist"),
    (["train", "--config", "FILE"], "is not valid"),
    (["train", "--data.name", "mnist", "--data.data_dir", "NOWHERE"], "NOWHERE"),
    (["train", "--out", "FILE"], "is a file, not a folder"),
    (["train", "--train.patience", "2"], "no validation split"),
    (["train", "--data.unseen_classes", "0.9"], "the training split has 1 class"),
    (["train", "--index.clusters_per_class", "300"], "use at most"),
    # --- the run commands
    (["evaluate", "NOWHERE"], "does not exist"),
    (["evaluate", "OUT"], "is not a run folder"),
    (["evaluate", "RUN", "--metrics", "accuracy"], "unknown ['accuracy']"),
    (["evaluate", "RUN", "--split", "unseen"], "split 'unseen' is empty"),
    (["evaluate", "RUN", "--dataset", "mnist", "--data-dir", "NOWHERE"], "NOWHERE"),
    (["evaluate", "RUN", "--threads", "-2"], "must be >= 1 (CPU threads); got -2"),
    (["evaluate", "RUN", "--device", "cuda"], "use --device cpu"),
    (["train", "--model.backbone", "torchvision-googlenet"], "needs torchvision"),
    (["train", "--dataset", "omniglot", "--data-dir", "BADZIP"], "not a readable zip"),
    (["train", "--dataset", "omniglot", "--data-dir", "BADNPZ"], "lacks the arrays"),
    (["evaluate", "HALFSAVED"], "is truncated or corrupt"),
    (["predict", "HALFSAVED", "--split", "test"], "is truncated or corrupt"),
    (["predict", "RUN", "--images", "NOWHERE"], "does not exist"),
    (["predict", "RUN", "--images", "OUT"], "holds no image files"),
    (["predict", "RUN", "--images", "FILE"], "cannot decode image"),
    (["predict", "RUN", "--split", "val"], "has no val split"),
    (["predict", "RUN", "--split", "test", "--top", "0"], "--top must be >= 1"),
    (["predict", "RUN", "--split", "test", "--out", "OUT/x.txt"], "must end in .csv or .json"),
    (["embed", "RUN", "--split", "test", "--out", "OUT/x.txt"], "must end in .npz"),
    (["retrieve", "RUN", "--split", "test", "--k", "0"], "--k and --limit must be >= 1"),
    (["retrieve", "RUN", "--split", "test", "--out", "OUT/x.jpg"], "must end in .png"),
    (["cluster", "RUN", "--split", "test", "--k", "0", "--out", "OUT/c"], "--k must be between"),
    (["export", "RUN", "--out", "FILE"], "is a file"),
    (["export", "NOWHERE", "--out", "OUT/e"], "does not exist"),
    # --- experiments, search, compare, report
    (["experiment", "classifcation", "--out", "OUT/x"], "classifcation"),
    (["experiment", "classification", "--jobs", "0", "--out", "OUT/x"], "jobs must be >= 1"),
    (["experiment", "classification", "--tuned", "NOWHERE", "--out", "OUT/x"],
     "has no tuning stage"),
    (["experiment", "classification-tuned", "--tuned", "NOWHERE", "--out", "OUT/x"],
     "holds no tuned.json"),
    (["experiment", "classification-tuned", "--datasets", "svhn", "--out", "OUT/x"],
     "select no run"),
    (["search", "--trials", "0", "--out", "OUT/s"], "trials must be >= 1"),
    (["search", "--trials", "2", "--out", "OUT/s", "--space.lr", "1:0.1"], "swap the bounds"),
    (["search", "--trials", "2", "--out", "OUT/s", "--space.margin", "0.1:1"],
     "does not apply to loss 'magnet'"),
    (["compare", "--losses", "magnet,arcface", "--out", "OUT/c"], "arcface"),
    (["report", "NOWHERE"], "NOWHERE"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    assert main(["train", "--out", str(run), "--quiet", "--epochs", "1", "--eval.plots",
                 "false", "--train.iterations_per_epoch", "3", "--train.threads", "1"]) == 0
    plain = root / "plain.txt"
    plain.write_text("not a checkpoint, not YAML: [")
    (root / "badzip").mkdir()
    (root / "badzip" / "images_background.zip").write_bytes(b"PK\x03\x04 not a zip")
    (root / "badnpz").mkdir()
    np.savez(root / "badnpz" / "omniglot_background.npz", images=np.zeros((4, 5, 5), np.uint8))
    import shutil
    shutil.copytree(run, root / "truncated")
    checkpoint = root / "truncated" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])       # a kill mid-copy
    return {"RUN": str(run), "FILE": str(plain), "NOWHERE": str(root / "nowhere"),
            "BADZIP": str(root / "badzip"), "BADNPZ": str(root / "badnpz"),
            "HALFSAVED": str(root / "truncated")}


@pytest.mark.parametrize(("argv", "phrase"), CASES,
                         ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line(argv, phrase, places, tmp_path, capsys):
    def place(word: str) -> str:
        for key, value in {**places, "OUT": str(tmp_path)}.items():
            word = word.replace(key, value)
        return word

    argv = [place(a) for a in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) if _argparse_error(argv) else _no_exit() as stop:
        code = main(argv + (["--quiet"] if argv[0] == "train" else []))
    err = capsys.readouterr().err.strip()
    if stop is not None and hasattr(stop, "value"):
        code = stop.value.code
    assert code == 2, (code, err)
    # argparse's own refusals print the usage block first; the message is the error line
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert err.endswith(lines[0]), err
    assert place(phrase) in lines[0], lines[0]


def _argparse_error(argv: list[str]) -> bool:
    """Cases argparse itself refuses (choices, types): it exits instead of returning."""
    from magnetdml.cli import COMMANDS, build_parser
    if argv[0] not in COMMANDS:
        return True
    import contextlib
    import io
    try:
        with contextlib.redirect_stderr(io.StringIO()):     # the case itself prints it
            build_parser(argv[0]).parse_args(argv)
    except SystemExit:
        return True
    return False


class _no_exit:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_the_table_is_large():
    assert len(CASES) >= 60


def test_a_refused_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--quiet", "--dataset", "mnist", "--data-dir",
                 str(tmp_path / "nowhere")]) == 2
    assert main(["train", "--out", str(out), "--quiet", "--epochs", "1", "--eval.plots",
                 "false", "--train.iterations_per_epoch", "2", "--train.threads", "1"]) == 0
    assert np.isfinite(__import__("json").loads((out / "metrics.json").read_text())[
        "knc_error"])


def test_silent_wrong_inputs_are_refused(tmp_path, capsys):
    """Inputs that used to train and report numbers that meant nothing."""
    import os
    import shutil
    from pathlib import Path
    # the canonical MNIST files, where MAGNETDML_DATA_ROOT names a folder holding mnist/
    mnist = Path(os.environ.get("MAGNETDML_DATA_ROOT", "/nonexistent")) / "mnist"
    assert main(["train", "--loss.alpha", "-5", "--out", str(tmp_path / "a")]) == 2
    assert "loss.alpha must be >= 0" in capsys.readouterr().err
    if (mnist / "train-images-idx3-ubyte.gz").is_file():     # the canonical MNIST files
        fake = tmp_path / "fashion"
        shutil.copytree(mnist, fake)
        assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(fake),
                     "--out", str(tmp_path / "b")]) == 2
        assert "is mnist's train-images-idx3-ubyte, not fashion-mnist's" in \
            capsys.readouterr().err
