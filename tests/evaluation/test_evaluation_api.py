"""``evaluate`` against metrics written the slow obvious way over all pairs, on small data."""

from types import SimpleNamespace

import numpy as np
import pytest

from magnetdml.evaluation import METRICS, KNearestClusters, estimate_variance, evaluate

NEIGHBOUR_METRICS = [
    "knn_error",
    "error_at_1",
    "error_at_5",
    "precision_at_1",
    "r_precision",
    "map_at_r",
    "recall_at_1",
    "recall_at_2",
    "recall_at_4",
    "recall_at_8",
]


def _data(seed=0, n=120, classes=8, dim=6, noise=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n) * 3 + 2
    centres = rng.normal(size=(y.max() + 1, dim))
    return (centres[y] + noise * rng.normal(size=(n, dim))).astype(np.float32), y


def _brute(x, y, ref, ref_y, self_reference, k=128, max_r=None):
    """Every neighbour metric, one query at a time, from the full distance matrix."""
    d = ((x[:, None, :].astype(np.float64) - ref[None]) ** 2).sum(-1)  # (N, N_ref)
    if self_reference:
        np.fill_diagonal(d, np.inf)
    variance = estimate_variance(ref, ref_y)
    classes = list(np.unique(ref_y))
    out = {m: [] for m in NEIGHBOUR_METRICS}
    for q in range(len(x)):
        order = np.argsort(d[q])[: len(ref) - self_reference]
        rel = ref_y[order] == y[q]
        scores = {c: 0.0 for c in classes}
        for l in order[:k]:
            scores[ref_y[l]] += np.exp(-d[q, l] / (2 * variance))
        ranked = sorted(classes, key=lambda c: (-scores[c], c))
        top = ranked.index(y[q]) if y[q] in classes else len(classes)
        out["knn_error"].append(top >= 1)
        out["error_at_1"].append(top >= 1)
        out["error_at_5"].append(top >= 5)
        r = int(rel.sum())
        if max_r is not None:
            r = min(r, max_r)
        if r == 0:
            continue
        out["precision_at_1"].append(rel[0])
        out["r_precision"].append(rel[:r].mean())
        precisions = [rel[: i + 1].mean() for i in range(r) if rel[i]]
        out["map_at_r"].append(sum(precisions) / r)
        for kk in (1, 2, 4, 8):
            out[f"recall_at_{kk}"].append(rel[:kk].any())
    return {m: float(np.mean(v)) for m, v in out.items()}


@pytest.mark.parametrize("batch_size", [5, 4096])
def test_self_reference_matches_brute_force_with_query_excluded(batch_size):
    x, y = _data()
    got = evaluate(x, y, metrics=NEIGHBOUR_METRICS, batch_size=batch_size)
    assert got == pytest.approx(_brute(x, y, x, y, True), abs=1e-9)
    assert 0.05 < got["knn_error"] < 0.95 and got["error_at_5"] < got["knn_error"]


def test_separate_reference_matches_brute_force_including_unknown_classes():
    x, y = _data(seed=1)
    queries, query_labels = _data(seed=2, n=50)
    query_labels[:3] = 1000  # classes absent from the reference
    got = evaluate(queries, query_labels, x, y, metrics=NEIGHBOUR_METRICS, k=10)
    assert got == pytest.approx(_brute(queries, query_labels, x, y, False, k=10), abs=1e-9)


def test_query_is_excluded_from_its_own_neighbours():
    x, y = _data(seed=3)
    own = evaluate(x, y, metrics=["precision_at_1", "knn_error"])
    with_self = evaluate(x, y, x, y, metrics=["precision_at_1"])
    assert with_self["precision_at_1"] == 1.0  # each query finds itself first
    assert own["precision_at_1"] < 1.0


def test_lone_queries_are_left_out_of_retrieval_but_count_as_errors():
    x, y = _data(seed=4, n=60)
    y = y.copy()
    y[0] = 999  # a class with a single example
    got = evaluate(x, y, metrics=NEIGHBOUR_METRICS)
    assert got == pytest.approx(_brute(x, y, x, y, True), abs=1e-9)
    alone = evaluate(x[:4], [0, 1, 2, 3], metrics=["precision_at_1", "knn_error"])
    assert np.isnan(alone["precision_at_1"]) and alone["knn_error"] == 1.0


def test_max_r_caps_r_precision_and_map():
    x, y = _data(seed=5)
    got = evaluate(x, y, metrics=["r_precision", "map_at_r"], max_r=3)
    assert got == pytest.approx(
        {m: v for m, v in _brute(x, y, x, y, True, max_r=3).items() if m in got}, abs=1e-9
    )


def test_invariant_to_scale_and_row_permutation():
    x, y = _data(seed=6)
    base = evaluate(x, y, metrics=NEIGHBOUR_METRICS)
    assert evaluate(x * 100, y, metrics=NEIGHBOUR_METRICS) == pytest.approx(base, abs=1e-9)
    perm = np.random.default_rng(0).permutation(len(y))
    assert evaluate(x[perm], y[perm], metrics=NEIGHBOUR_METRICS) == pytest.approx(base, abs=1e-9)


def test_knc_metrics_use_the_index_and_variance():
    x, y = _data(seed=7)
    classes = np.unique(y)
    centroids = np.stack([x[y == c].mean(0) for c in classes])
    index = SimpleNamespace(centroids_=centroids, centroid_labels_=classes)
    got = evaluate(x, y, index=index, lengthscale=0.8)
    assert list(got) == list(METRICS)
    predicted = KNearestClusters(128).fit(index, 0.8).predict(x)
    assert got["knc_error"] == got["knc_error_at_1"] == pytest.approx(np.mean(predicted != y))
    assert got["knc_error_at_5"] <= got["knc_error"]


def test_default_metric_set_and_order():
    x, y = _data(seed=8)
    got = evaluate(x, y)
    assert list(got) == [m for m in METRICS if not m.startswith("knc")]
    assert all(isinstance(v, float) for v in got.values())
    assert list(evaluate(x, y, metrics=["nmi", "recall_at_2"])) == ["nmi", "recall_at_2"]
    assert list(evaluate(x, y, metrics="f1")) == ["f1"]


def test_errors_name_the_parameter_and_the_fix():
    x, y = _data(seed=9, n=20)
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['acc'\]; valid names: knn_error"):
        evaluate(x, y, metrics=["acc"])
    with pytest.raises(ValueError, match="knc_\\* metrics need index="):
        evaluate(x, y, metrics=["knc_error"])
    with pytest.raises(ValueError, match="lengthscale must be given"):
        evaluate(x, y, index=SimpleNamespace(centroids_=x[:3], centroid_labels_=y[:3]))
    with pytest.raises(ValueError, match="pass reference and reference_labels together"):
        evaluate(x, y, reference=x)
    with pytest.raises(ValueError, match=r"labels must have one entry .* \(20\); got 19"):
        evaluate(x, y[:-1])
    with pytest.raises(ValueError, match="reference must have the embeddings' dimension 6; got 2"):
        evaluate(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="max_r must be >= 1 \\(or None for no cap\\); got 0"):
        evaluate(x, y, max_r=0)
    with pytest.raises(ValueError, match="embeddings must be finite"):
        evaluate(np.full((3, 2), np.nan), [0, 1, 1])
    with pytest.raises(ValueError, match="need >= 2 embeddings"):
        evaluate(x[:1], y[:1], metrics=["knn_error"])


@pytest.mark.slow
def test_r_is_every_same_class_reference_by_default_even_beyond_1024():
    """The standard R-precision / MAP@R (all R same-class references): the old default cap of
    1024 changed them on classes larger than that."""
    rng = np.random.default_rng(8)
    y = np.repeat([0, 1], 1300)
    x = (rng.standard_normal((y.size, 3)) + 0.8 * y[:, None]).astype(np.float32)
    got = evaluate(x, y, metrics=["r_precision", "map_at_r"])
    brute = _brute(x, y, x, y, True)
    assert got == pytest.approx({m: brute[m] for m in got}, abs=1e-9)
    capped = evaluate(x, y, metrics=["r_precision", "map_at_r"], max_r=1024)
    assert capped["map_at_r"] != pytest.approx(got["map_at_r"], abs=1e-4)
