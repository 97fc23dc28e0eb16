"""Every plot writes a real PNG; inputs are validated; t-SNE puts centres among their points."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from magnetdml.reporting import plots
from magnetdml.training import report_plots as run_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, expected):
    assert path == expected and path.exists()
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    with Image.open(path) as image:  # decodes: a truncated file would fail here
        width, height = image.size
        assert width > 300 and height > 300
        # A drawn figure is not one flat colour.
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(300)) > 10


def blobs(rng, classes=4, per_class=25, dim=8, spread=0.3):
    centres = rng.normal(scale=5.0, size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + rng.normal(scale=spread, size=(labels.size, dim)), labels, centres)


@pytest.mark.slow
def test_importing_plots_leaves_pyplot_alone(tmp_path):
    # pyplot owns the process-wide backend and figure registry; a library must not touch it.
    code = (
        "import sys, magnetdml.reporting.plots as p, magnetdml.training.report_plots; "
        f"p.plot_error_bars({{'a': [1.0, 2.0]}}, {str(tmp_path / 'b.png')!r}); "
        "sys.exit(1 if 'matplotlib.pyplot' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize(
    "history",
    [
        {"iteration": [10, 20, 30, 40], "loss": [2.0, 1.5, 1.2, 1.1], "epoch": [0, 0, 1, 1]},
        [{"iteration": i, "loss": 1 / i, "epoch": i // 50} for i in range(1, 200)],
        [3.0, 2.0, 1.5, 1.0, 0.8],
    ],
)
def test_loss_curve_accepts_every_history_form(tmp_path, history):
    out = tmp_path / "sub" / "loss.png"  # missing folders are created
    assert_png(run_plots.plot_loss_curve(history, out), out)


def test_loss_curve_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"history\['epoch'\] must have one entry per loss "
        r"\(3\); got 2",
    ):
        run_plots.plot_loss_curve({"loss": [1, 2, 3], "epoch": [0, 1]}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="at least one 'loss' value"):
        run_plots.plot_loss_curve([], tmp_path / "a.png")
    with pytest.raises(TypeError, match="history must be"):
        run_plots.plot_loss_curve(3.0, tmp_path / "a.png")
    with pytest.raises(TypeError, match="path must be a file path"):
        run_plots.plot_loss_curve([1.0], 5)


@pytest.mark.slow
def test_embedding_plot_with_centroids(tmp_path):
    x, y, centres = blobs(np.random.default_rng(0))
    out = run_plots.plot_embedding(
        x,
        y,
        tmp_path / "emb.png",
        centroids=centres,
        centroid_labels=np.arange(4),
        title="final distribution",
    )
    assert_png(out, tmp_path / "emb.png")
    # The same seed gives the same picture; subsampling with another seed changes it.
    again = run_plots.plot_embedding(
        x, y, tmp_path / "again.png", centroids=centres, centroid_labels=np.arange(4)
    )
    other = run_plots.plot_embedding(
        x,
        y,
        tmp_path / "other.png",
        centroids=centres,
        centroid_labels=np.arange(4),
        seed=1,
        max_points=60,
    )
    assert again.read_bytes() != other.read_bytes()
    first = run_plots.plot_embedding(
        x, y, tmp_path / "first.png", centroids=centres, centroid_labels=np.arange(4)
    )
    assert first.read_bytes() == again.read_bytes()


def test_embedding_plot_many_classes_and_two_dimensions(tmp_path):
    rng = np.random.default_rng(1)
    x, y, _ = blobs(rng, classes=30, per_class=3, dim=2)  # 2-D: drawn as is, no legend
    assert_png(run_plots.plot_embedding(x, y, tmp_path / "e.png"), tmp_path / "e.png")


def test_joint_tsne_puts_each_centre_among_its_own_class():
    x, y, centres = blobs(np.random.default_rng(2))
    xy = run_plots._map_2d(np.concatenate([x, centres]).astype(np.float32), seed=0, perplexity=30)
    points, centre_xy = xy[: y.size], xy[y.size :]
    for c, position in enumerate(centre_xy):
        nearest = np.argsort(((points - position) ** 2).sum(1))[:5]
        assert (y[nearest] == c).all()


def test_embedding_plot_errors(tmp_path):
    x, y, centres = blobs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"labels must have one entry per embedding \(100\)"):
        run_plots.plot_embedding(x, y[:-1], tmp_path / "e.png")
    with pytest.raises(
        ValueError,
        match=r"centroids must have the embeddings' dimension 8; "
        r"got 3",
    ):
        run_plots.plot_embedding(
            x, y, tmp_path / "e.png", centroids=centres[:, :3], centroid_labels=np.arange(4)
        )
    with pytest.raises(ValueError, match="centroid_labels is required"):
        run_plots.plot_embedding(x, y, tmp_path / "e.png", centroids=centres)
    with pytest.raises(ValueError, match="max_points must be >= 2"):
        run_plots.plot_embedding(x, y, tmp_path / "e.png", max_points=1)


def test_first_iteration_reaching_matches_a_loop():
    rng = np.random.default_rng(3)
    curve = [(i * 100, e) for i, e in enumerate(rng.uniform(0.1, 0.9, 40))]
    for target in (0.05, 0.2, 0.5, 0.95):
        expected = next((it for it, e in curve if e <= target), None)
        got = plots.first_iteration_reaching(curve[::-1], target)  # order does not matter
        assert got == expected


def test_error_curves_with_markers(tmp_path):
    curves = {
        "softmax": [(0, 0.9), (1000, 0.4), (2000, 0.3)],
        "triplet": {0: 0.9, 1000: 0.6, 2000: 0.5},
        "magnet": [(0, 0.9), (500, 0.5), (1000, 0.3), (2000, 0.25)],
    }
    target = curves["triplet"][2000]
    markers = {
        name: plots.first_iteration_reaching(curve, target) for name, curve in curves.items()
    }
    assert markers == {"softmax": 1000, "triplet": 2000, "magnet": 500}
    markers["softmax"] = (1000, 0.4)  # an explicit (iteration, error) pair also works
    out = plots.plot_error_curves(
        curves, tmp_path / "err.png", markers=markers, marker_label="reached triplet's final error"
    )
    assert_png(out, tmp_path / "err.png")
    with pytest.raises(ValueError, match=r"markers\['lifted'\] is an iteration.*needs a curve"):
        plots.plot_error_curves(curves, tmp_path / "e.png", markers={"lifted": 10})
    with pytest.raises(
        ValueError,
        match=r"curves\['magnet'\] must be a non-empty list of "
        r"\(x, y\) pairs",
    ):
        plots.plot_error_curves({"magnet": []}, tmp_path / "e.png")


def test_attribute_concentration(tmp_path):
    sizes = [1, 2, 4, 8, 16, 32, 64, 128]
    curves = {
        "magnet": [(k, 0.9 - 0.02 * i) for i, k in enumerate(sizes)],
        "softmax": [(k, 0.85 - 0.03 * i) for i, k in enumerate(sizes)],
    }
    out = plots.plot_attribute_concentration(curves, tmp_path / "attr.png")
    assert_png(out, tmp_path / "attr.png")
    with pytest.raises(ValueError, match="curves must be a non-empty dict"):
        plots.plot_attribute_concentration({}, tmp_path / "attr.png")


def test_error_bars(tmp_path):
    results = {"softmax": [0.12, 0.13, 0.125], "triplet": [0.2, 0.18, 0.21], "magnet": 0.1}
    assert_png(plots.plot_error_bars(results, tmp_path / "bars.png"), tmp_path / "bars.png")
    with pytest.raises(
        ValueError,
        match=r"results\['magnet'\] must be a non-empty list of "
        r"finite errors",
    ):
        plots.plot_error_bars({"magnet": [0.1, float("nan")]}, tmp_path / "bars.png")
