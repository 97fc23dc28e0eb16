"""``magnetdml report``: pages of a real tiny run folder and of a fake experiment folder."""

import base64
import json
import re

import pytest

from magnetdml.cli import main
from magnetdml.reporting import build_page, format_cell, write_report
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config

# The smallest PNG (1x1): the fake experiment's figures only need to be real files.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
    "hgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-magnet"
    config = apply_overrides(
        Config(),
        {
            "train.epochs": 1,
            "train.threads": 1,
            "train.iterations_per_epoch": 5,
            "model.embedding_dim": 8,
            "out": str(out),
        },
    )
    train(config, progress=False)
    return out


def embedded_images(text):
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([^']+)'", text)]


@pytest.mark.slow
def test_run_report_holds_the_numbers_images_and_config(run_dir):
    summary = json.loads((run_dir / "metrics.json").read_text())
    html_path, md_path = write_report(run_dir)
    page, md = html_path.read_text(), md_path.read_text()
    knc = f"{100 * summary['knc_error']:.2f}%"
    for text in (page, md):
        assert knc in text and f"{summary['nmi']:.4g}" in text
        assert '"clusters_per_class": 4' in text  # the config
    # every PNG of the run is inlined byte for byte; no external reference remains
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    assert {"loss_curve.png", "tsne_final.png", "report_curves.png"} <= set(pngs)
    assert sorted(embedded_images(page)) == sorted((run_dir / p).read_bytes() for p in pngs)
    assert "src='loss_curve.png'" not in page and "http" not in page
    for name in pngs:
        assert f"]({name})" in md
    # the history table: one row per epoch
    assert "| 1 | 5 |" in md


@pytest.mark.slow
def test_report_into_another_folder_links_relative_to_it(run_dir, tmp_path):
    out = tmp_path / "pages"
    (md,) = write_report(run_dir, out_dir=out, formats="markdown")
    assert md == out / "report.md"
    links = re.findall(r"\]\(([^)]+\.png)\)", md.read_text())
    assert links and all((out / link).resolve().is_file() for link in links)


def fake_experiment(root):
    """An experiment folder as magnetdml experiment writes it: results.json, a figure and a
    run folder with metrics.json / metrics.jsonl."""
    (root / "bars.png").write_bytes(PNG)
    run = root / "magnet-s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"name": "digits"}}))
    (run / "metrics.json").write_text(json.dumps({"knc_error": 0.125, "nmi": 0.8765}))
    (run / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"epoch": e, "iteration": 10 * e, "loss": 1.0 / e, "knc_error": 0.3 / e})
            + "\n"
            for e in (1, 2, 3)
        )
    )
    (run / "loss_curve.png").write_bytes(PNG)
    results = {
        "experiment": "hierarchy",
        "quick": True,
        "description": "Fine classes | pairs",
        "command": "magnetdml experiment hierarchy --quick",
        "hardware": {
            "cpu": "Test CPU",
            "cores": 2,
            "torch_threads": 1,
            "device": "cpu",
            "torch": "2.13",
        },
        "runs": {"magnet-s0": {"group": {"loss": "magnet", "seed": 0}}},
        "tables": [
            {"title": "Fine-label errors", "rows": [{"loss": "magnet", "knc_error_at_1": 0.2864}]}
        ],
        "claims": [{"claim": "Magnet beats softmax", "holds": True, "detail": "28.6%"}],
        "notes": ["A note <b>with markup</b>."],
        "figures": [{"title": "Error bars", "path": "bars.png"}],
    }
    (root / "results.json").write_text(json.dumps(results))
    return root


def test_experiment_report_holds_tables_claims_runs_and_figures(tmp_path):
    folder = fake_experiment(tmp_path)
    assert main(["report", str(folder)]) == 0
    page, md = (folder / "report.html").read_text(), (folder / "report.md").read_text()
    for text in (page, md):
        assert "Experiment hierarchy (quick version)" in text
        assert "28.64%" in text and "Magnet beats softmax" in text and "Test CPU" in text
        assert "12.50%" in text and "0.8765" in text  # the run's metrics.json
    assert "&lt;b&gt;with markup&lt;/b&gt;" in page and "<b>" not in page
    assert "Fine classes \\| pairs" in md or "Fine classes | pairs" in md
    assert "| magnet-s0 | magnet | 0 | 12.50% |" in md
    assert "![Error bars](bars.png)" in md
    assert "![Training loss: magnet-s0](magnet-s0/loss_curve.png)" in md
    assert "](report_curves.png)" in md and (folder / "report_curves.png").is_file()
    images = embedded_images(page)
    assert len(images) == 3 and images.count(PNG) == 2  # bars, run loss curve, curves


def test_folder_that_is_neither_gets_a_clear_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a run folder .*nor an experiment folder"):
        build_page(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_page(tmp_path / "missing")
    with pytest.raises(ValueError, match="formats must be one of"):
        write_report(tmp_path, formats="pdf")


def test_format_cell():
    assert format_cell("knc_error", 0.0123) == "1.23%"
    assert format_cell("relative_error", 0.5) == "0.5"
    assert format_cell("error_drop", -0.0827) == "-8.27%"  # a difference of errors
    assert format_cell("nmi", 0.87654) == "0.8765"
    assert format_cell("x", None) == "n/a" and format_cell("x", float("nan")) == "n/a"
    assert format_cell("x", {"a": 1}) == '{"a": 1}'
