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
    (
        ["experiment", "classification", "--tuned", "NOWHERE", "--out", "OUT/x"],
        "has no tuning stage",
    ),
    (
        ["experiment", "classification-tuned", "--tuned", "NOWHERE", "--out", "OUT/x"],
        "holds no tuned.json",
    ),
    (
        ["experiment", "classification-tuned", "--datasets", "svhn", "--out", "OUT/x"],
        "select no run",
    ),
    (["search", "--trials", "0", "--out", "OUT/s"], "trials must be >= 1"),
    (["search", "--trials", "2", "--out", "OUT/s", "--space.lr", "1:0.1"], "swap the bounds"),
    (
        ["search", "--trials", "2", "--out", "OUT/s", "--space.margin", "0.1:1"],
        "does not apply to loss 'magnet'",
    ),
    (["compare", "--losses", "magnet,arcface", "--out", "OUT/c"], "arcface"),
    (["report", "NOWHERE"], "NOWHERE"),
    # --- issue 23: checkpoints checked, not trusted
    (["evaluate", "EMPTYCKPT"], "is empty (0 bytes)"),
    (["predict", "EMPTYCKPT", "--split", "test"], "is empty (0 bytes)"),
    (["evaluate", "CUT5000"], "is truncated or corrupt"),
    (["evaluate", "OTHERDIM"], "model.embedding_dim differ"),
    (["evaluate", "OTHERBACKBONE"], "model.backbone differ"),
    (["evaluate", "OTHERLOSS"], "was written by a 'magnet' run"),
    (["predict", "OTHERLOSS", "--split", "test"], "loss.name differ"),
    (["evaluate", "OLDDIM"], "does not fit the model config.json describes"),
    (["evaluate", "OLDLOSS"], "holds a cluster index"),
    (["evaluate", "NOCKPT"], "has no checkpoint.pt yet"),
    (["train", "--model.init_from", "EMPTYCKPT"], "is empty (0 bytes)"),
    (["train", "--model.init_from", "CUT5000"], "cannot be read as a checkpoint"),
    (
        ["train", "--model.init_from", "OTHERBACKBONE", "--model.backbone", "small-cnn"],
        "does not fit this model",
    ),
    # --- issue 23: silently wrong, slow, or crashing inputs of the run commands
    (["evaluate", "RUN", "--data-dir", "NOWHERE"], "--data-dir needs --dataset"),
    (
        ["retrieve", "RUN", "--split", "test", "--limit", "100000", "--out", "OUT/g.png"],
        "--limit must be <= ",
    ),
    (["predict", "RUN", "--images", "HUGE"], "pixels"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--quiet",
                "--epochs",
                "1",
                "--eval.plots",
                "false",
                "--train.iterations_per_epoch",
                "3",
                "--train.threads",
                "1",
            ]
        )
        == 0
    )
    plain = root / "plain.txt"
    plain.write_text("not a checkpoint, not YAML: [")
    (root / "badzip").mkdir()
    (root / "badzip" / "images_background.zip").write_bytes(b"PK\x03\x04 not a zip")
    (root / "badnpz").mkdir()
    np.savez(root / "badnpz" / "omniglot_background.npz", images=np.zeros((4, 5, 5), np.uint8))
    import shutil

    shutil.copytree(run, root / "truncated")
    checkpoint = root / "truncated" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # a kill mid-copy
    return {
        "RUN": str(run),
        "FILE": str(plain),
        "NOWHERE": str(root / "nowhere"),
        "BADZIP": str(root / "badzip"),
        "BADNPZ": str(root / "badnpz"),
        "HALFSAVED": str(root / "truncated"),
        **_damaged_runs(root, run),
    }


def _damaged_runs(root, run) -> dict[str, str]:
    """Copies of RUN whose checkpoint and config.json disagree, or are damaged."""
    import json
    import shutil

    def copy(name, checkpoint=None, **config_edits):
        folder = root / name
        shutil.copytree(run, folder)
        if checkpoint is not None:
            (folder / "checkpoint.pt").write_bytes(checkpoint)
        config = json.loads((folder / "config.json").read_text())
        for key, value in config_edits.items():
            section, field = key.split("__")
            config[section][field] = value
        (folder / "config.json").write_text(json.dumps(config))
        return str(folder)

    data = (run / "checkpoint.pt").read_bytes()
    import io

    import torch

    state = torch.load(io.BytesIO(data), weights_only=False)
    state.pop("identity", None)  # as written before checkpoints recorded it
    legacy = io.BytesIO()
    torch.save(state, legacy)
    places = {
        "OLDDIM": copy("olddim", legacy.getvalue(), model__embedding_dim=32),
        "OLDLOSS": copy("oldloss", legacy.getvalue(), loss__name="triplet"),
        "EMPTYCKPT": copy("empty", b""),
        "CUT5000": copy("cut", data[:5000]),
        "OTHERDIM": copy("dim", model__embedding_dim=32),
        "OTHERBACKBONE": copy("backbone", model__backbone="small-cnn"),
        "OTHERLOSS": copy("loss", loss__name="triplet"),
    }
    unstarted = root / "unstarted"  # killed before its first epoch ended
    shutil.copytree(run, unstarted)
    for name in ("checkpoint.pt", "metrics.json", "metrics.jsonl"):
        (unstarted / name).unlink()
    places["NOCKPT"] = str(unstarted)
    places["HUGE"] = str(_decompression_bomb(root / "huge.png"))
    return places


def _decompression_bomb(path):
    """A valid PNG header announcing 20000 x 20000 pixels (more than Pillow's guard allows)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 8-bit grey
    rows = zlib.compress(b"\x00" * 20001 * 4)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "phrase"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
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
        with contextlib.redirect_stderr(io.StringIO()):  # the case itself prints it
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
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--quiet",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--quiet",
                "--epochs",
                "1",
                "--eval.plots",
                "false",
                "--train.iterations_per_epoch",
                "2",
                "--train.threads",
                "1",
            ]
        )
        == 0
    )
    assert np.isfinite(__import__("json").loads((out / "metrics.json").read_text())["knc_error"])


def test_silent_wrong_inputs_are_refused(tmp_path, capsys):
    """Inputs that used to train and report numbers that meant nothing."""
    import os
    import shutil
    from pathlib import Path

    # the canonical MNIST files, where MAGNETDML_DATA_ROOT names a folder holding mnist/
    mnist = Path(os.environ.get("MAGNETDML_DATA_ROOT", "/nonexistent")) / "mnist"
    assert main(["train", "--loss.alpha", "-5", "--out", str(tmp_path / "a")]) == 2
    assert "loss.alpha must be >= 0" in capsys.readouterr().err
    if (mnist / "train-images-idx3-ubyte.gz").is_file():  # the canonical MNIST files
        fake = tmp_path / "fashion"
        shutil.copytree(mnist, fake)
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    "fashion-mnist",
                    "--data-dir",
                    str(fake),
                    "--out",
                    str(tmp_path / "b"),
                ]
            )
            == 2
        )
        assert "is mnist's train-images-idx3-ubyte, not fashion-mnist's" in capsys.readouterr().err


# --- issue 23: the library API refuses what it used to turn into numbers that mean nothing


def _api_cases():
    import magnetdml as md

    def loaded(places):
        return md.load_run(places["RUN"])

    @pytest.mark.slow
    def test_split(places):
        return loaded(places).splits.test

    def inputs(places, value):  # (model, inputs of the run's shape, every pixel = value)
        run = loaded(places)
        return run.model, np.full((3, *run.splits.input_shape), value, np.float32)

    return [
        ("top_k(k=-2)", lambda p: loaded(p).top_k(test_split(p), k=-2), "k must be >= 1"),
        ("top_k(k=0)", lambda p: loaded(p).top_k(test_split(p), k=0), "k must be >= 1"),
        (
            "cluster(n_clusters=0)",
            lambda p: loaded(p).cluster(test_split(p), 0),
            "n_clusters must be >= 1",
        ),
        (
            "cluster(n_clusters=2.5)",
            lambda p: loaded(p).cluster(test_split(p), 2.5),
            "n_clusters must be an integer",
        ),
        (
            "cluster(n_clusters > N)",
            lambda p: loaded(p).cluster(np.zeros((3, 1, 8, 8), np.float32), 5),
            "n_clusters must be <= 3",
        ),
        ("MagnetLoss(alpha=-100)", lambda p: md.MagnetLoss(alpha=-100), "alpha must be >= 0"),
        (
            "embed(empty)",
            lambda p: md.embed(loaded(p).model, np.zeros((0, 1, 8, 8), np.float32)),
            "no inputs",
        ),
        (
            "embed(1-D)",
            lambda p: md.embed(loaded(p).model, np.zeros(64, np.float32)),
            "must be a batch",
        ),
        (
            "run.predict(empty)",
            lambda p: loaded(p).predict(np.zeros((0, 1, 8, 8), np.float32)),
            "no inputs",
        ),
        (
            "evaluate(empty)",
            lambda p: md.evaluate(np.zeros((0, 4)), np.zeros(0, int)),
            "at least one row",
        ),
        ("evaluate(1-D)", lambda p: md.evaluate(np.zeros(4), np.zeros(4, int)), "2-D array"),
        (
            "evaluate(1e20)",
            lambda p: md.evaluate(np.full((6, 4), 1e20), np.arange(6) % 2),
            "overflow",
        ),
        ("embed(inputs of 1e20)", lambda p: md.embed(*inputs(p, 1e20)), "overflow"),
        ("embed(inputs of NaN)", lambda p: md.embed(*inputs(p, np.nan)), "not finite"),
        (
            "run.cluster(inputs of 1e20)",
            lambda p: loaded(p).cluster(inputs(p, 1e20)[1], 2),
            "overflow",
        ),
        ("run.embed(inputs of 1e20)", lambda p: loaded(p).embed(inputs(p, 1e20)[1]), "overflow"),
        # misspelt keyword arguments (alpah=5) are refused by name, never swallowed
        *[
            (f"{name}(alpah=5)", call, "alpah")
            for name, call in [
                ("md.load_dataset", lambda p: md.load_dataset("digits", alpah=5)),
                ("md.build_model", lambda p: md.build_model("mlp", (1, 8, 8), 16, alpah=5)),
                ("md.evaluate", lambda p: md.evaluate(np.eye(4), np.arange(4) % 2, alpah=5)),
                ("md.embed", lambda p: md.embed(loaded(p).model, np.zeros((1, 1, 8, 8)), alpah=5)),
                ("md.load_run", lambda p: md.load_run(p["RUN"], alpah=5)),
                ("md.train", lambda p: md.train(md.Config(), alpah=5)),
                (
                    "md.apply_overrides",
                    lambda p: md.apply_overrides(md.Config(), {"train.alpah": 5}),
                ),
                ("md.KNearestClusters", lambda p: md.KNearestClusters(alpah=5)),
                ("md.ClusterIndex", lambda p: md.ClusterIndex(alpah=5)),
                ("run.top_k", lambda p: loaded(p).top_k(test_split(p), alpah=5)),
            ]
        ],
    ]


API_CASES = _api_cases()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("call", "phrase"), [(c, m) for _, c, m in API_CASES], ids=[name for name, _, _ in API_CASES]
)
def test_api_bad_input_is_one_clear_error(call, phrase, places):
    with pytest.raises((ValueError, TypeError), match=phrase.replace("(", r"\(")):
        call(places)


def _tiny_train(out, *extra) -> list[str]:
    return [
        "train",
        "--out",
        str(out),
        "--quiet",
        "--eval.plots",
        "false",
        "--train.iterations_per_epoch",
        "2",
        "--train.threads",
        "1",
        *extra,
    ]


def test_a_rerun_without_epochs_changes_nothing(tmp_path, capsys):
    """A finished 3-epoch run rerun without --epochs is not trained on to the default 30."""
    import json

    out = tmp_path / "run"
    assert main(_tiny_train(out, "--epochs", "3")) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main(_tiny_train(out)) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
    assert (out / "checkpoint.pt").read_bytes() == before
    assert main(_tiny_train(out, "--epochs", "4")) == 0  # asked for: trained on
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 4


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(
    tmp_path, monkeypatch, capsys
):
    """--overwrite builds the new run beside the old one: a kill before its first checkpoint
    leaves the old run whole; the first checkpoint swaps them."""
    import json

    from magnetdml.training import run_dir as run_dir_module

    out = tmp_path / "run"
    assert main(_tiny_train(out, "--epochs", "1")) == 0
    old = {
        name: (out / name).read_bytes()
        for name in ("checkpoint.pt", "metrics.json", "metrics.jsonl", "config.json")
    }

    def killed(self, state):
        raise KeyboardInterrupt  # stands for a kill -9 before the first checkpoint

    monkeypatch.setattr(run_dir_module.RunDir, "save_checkpoint", killed)
    assert main(_tiny_train(out, "--epochs", "2", "--overwrite")) == 130
    assert "is untouched" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in old} == old
    monkeypatch.undo()
    assert main(_tiny_train(out, "--epochs", "2", "--overwrite")) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    # metrics.csv, opened in the new run's staging folder, followed it through the swap
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left beside


def test_a_second_train_on_the_same_folder_is_locked_out(tmp_path, capsys):
    import os
    import socket

    from magnetdml.training.run_dir import RunDir

    out = tmp_path / "run"
    holder = RunDir.open(out, {"stand": "in"})  # another train process holds it
    try:
        assert main(_tiny_train(out, "--epochs", "1")) == 2
        err = capsys.readouterr().err
        assert "is in use by another magnetdml process" in err
        assert f"pid {os.getpid()}" in err and socket.gethostname() in err
        assert not (out / "metrics.jsonl").exists()
    finally:
        holder.close()
    assert main(_tiny_train(out, "--epochs", "1")) == 0  # free once the holder ends


def test_sigint_during_a_checkpoint_write_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, capsys
):
    import os
    import signal

    import torch

    from magnetdml.training import run_dir as run_dir_module
    from magnetdml.training.safe_load import load_state

    out = tmp_path / "run"
    saves = []
    real_save = torch.save

    class Interrupted:  # Ctrl-C while torch's zip writer is calling write()
        def __init__(self, handle):
            self.handle, self.writes = handle, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return self.handle.write(data)

        def flush(self):
            self.handle.flush()

    def interrupted_save(state, handle):
        saves.append(state["epoch"])
        real_save(state, Interrupted(handle) if len(saves) == 2 else handle)

    monkeypatch.setattr(run_dir_module.torch, "save", interrupted_save)
    code = main(_tiny_train(out, "--epochs", "3"))
    err = capsys.readouterr().err.strip()
    assert code == 130 and len(err.splitlines()) == 1 and "interrupted" in err, err
    assert load_state(out / "checkpoint.pt")["epoch"] in (1, 2)
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    assert main(_tiny_train(out, "--epochs", "3")) == 0  # resumes


def _worker_sleeps(pid_file: str) -> None:
    import os
    import time

    with open(pid_file, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(120)


@pytest.mark.slow
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """kill -9 of `search --jobs 2` / `compare --jobs 2` must not leave its workers running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pids = tmp_path / "pids"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; sys.path[:0] = sys.argv[1:3]\n"
                "from magnetdml.training.parallel import in_workers\n"
                "from test_bad_input import _worker_sleeps\n"
                "list(in_workers(_worker_sleeps, [(sys.argv[3],)] * 2, jobs=2))"
            ),
            str(__import__("pathlib").Path(__file__).parent),
            str(__import__("pathlib").Path(__import__("magnetdml").__file__).parents[1]),
            str(pids),
        ]
    )
    try:
        # generous: on a loaded machine two spawned workers can take a minute to import torch
        for _ in range(3000):
            if pids.exists() and len(pids.read_text().split()) == 2:
                break
            assert parent.poll() is None, f"the parent ended (code {parent.returncode}) first"
            time.sleep(0.1)
        assert pids.exists(), "no worker started within 300 s"
        workers = [int(p) for p in pids.read_text().split()]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        for _ in range(300):
            alive = [p for p in workers if _alive(p)]
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, f"workers {alive} outlived their killed parent"
    finally:
        parent.kill()
        for p in [int(p) for p in pids.read_text().split()] if pids.exists() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def _alive(pid: int) -> bool:
    import os

    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reaps it if it is our zombie child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = __import__("pathlib").Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def test_experiments_default_to_an_untracked_folder():
    import subprocess
    from pathlib import Path

    from magnetdml.cli.experiment import DEFAULT_OUT

    root = Path(__file__).parents[2]
    assert not str(DEFAULT_OUT).startswith("benchmarks")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(DEFAULT_OUT / "x" / "f.json")],
        cwd=root,
        capture_output=True,
    )
    assert ignored.returncode == 0, f"{DEFAULT_OUT} is not ignored by git"


@pytest.mark.slow
def test_evaluate_on_a_dataset_shows_its_phases(places, capsys):
    assert main(["evaluate", places["RUN"], "--dataset", "digits"]) == 0
    err = capsys.readouterr().err
    assert "loading digits" in err and "embedding" in err and "scoring" in err, err
    assert main(["evaluate", places["RUN"], "--dataset", "digits", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_report_on_a_compare_folder(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--losses",
                "magnet,triplet",
                "--epochs",
                "1",
                "--quiet",
                "--train.iterations_per_epoch",
                "2",
                "--eval.plots",
                "false",
                "--train.threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    page = (out / "report.md").read_text()
    assert "magnet" in page and "triplet" in page


@pytest.mark.slow
def test_resuming_from_another_runs_checkpoint_is_refused(places, tmp_path, capsys):
    """An unfinished run folder whose checkpoint a magnet run wrote, but whose config.json
    says triplet: resuming it would train a triplet run from a magnet state."""
    import shutil

    folder = tmp_path / "swapped"
    shutil.copytree(places["OTHERLOSS"], folder)
    (folder / "metrics.json").unlink()  # unfinished: train resumes it
    assert (
        main(["train", "--config", str(folder / "config.json"), "--out", str(folder), "--quiet"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "was written by a 'magnet' run" in err and len(err.splitlines()) == 1, err
