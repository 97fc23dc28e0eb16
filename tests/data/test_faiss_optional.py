"""faiss is an extra: the package imports without it, and the first k-means or neighbour search
says in one line how to get it; every faiss import of the package goes through one helper."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import magnetdml as md
from magnetdml._faiss import INSTALL_HINT, load_faiss
from magnetdml.cli import main

SRC = Path(md.__file__).parent


def test_only_the_helper_imports_faiss():
    importers = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"^\s*(import faiss|from faiss)", path.read_text(), re.M)
    ]
    assert importers == ["_faiss.py"] or importers == [], importers


def test_the_installed_faiss_is_the_one_used():
    faiss = pytest.importorskip("faiss")
    assert load_faiss() is faiss


def test_without_faiss_the_first_search_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if no faiss were installed
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    with pytest.raises(ImportError, match=re.escape("pip install 'magnetdml[faiss]'")):
        md.ClusterIndex(clusters_per_class=2, seed=0).fit(x, y)
    with pytest.raises(ImportError, match="faiss-gpu"):
        md.evaluate(x, y, metrics=["recall_at_1"])


def test_without_faiss_the_cli_prints_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert (
        main(
            [
                "--quiet",
                "train",
                "--epochs",
                "1",
                "--train.threads",
                "1",
                "--eval.plots",
                "false",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == f"magnetdml train: error: {INSTALL_HINT}"


@pytest.mark.parametrize("loss", ["magnet", "softmax"])
def test_without_faiss_a_run_stops_before_its_folder_or_training(
    monkeypatch, capsys, tmp_path, loss
):
    # softmax trains without an index: it used to train the whole run and stop at evaluation
    monkeypatch.setitem(sys.modules, "faiss", None)
    out = tmp_path / "run"
    argv = ["--quiet", "train", "--loss.name", loss, "--epochs", "1", "--train.threads", "1"]
    assert main([*argv, "--eval.plots", "false", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"magnetdml train: error: {INSTALL_HINT}"
    assert not out.exists()
