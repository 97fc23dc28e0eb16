"""The CPU form of Magnet's cluster terms (numpy, its gradient written out) against the
autograd form that other devices use: same values, same gradients, same refusals."""

import warnings

import pytest
import torch

import magnetdml as md
from magnetdml.losses.cluster_batch import batch_clusters
from magnetdml.losses.cluster_terms_cpu import CPUClusterTerms
from magnetdml.losses.magnet import ClusterTerms, autograd_cluster_terms

# (cluster ids, each cluster's class): ids in any order, classes with several clusters
LAYOUTS = [
    ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]),
    ([9, 2, 7, 4, 30, 11], [3, 3, 1, 1, 0, 2]),
    ([5, 6], [0, 1]),
]


def batch(layout, per_cluster=4, dim=6, seed=0, dtype=torch.float64, offset=0.0):
    ids, classes = (torch.tensor(v) for v in layout)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(ids) * per_cluster, dim, generator=g, dtype=dtype) * 3 + offset
    return x, classes.repeat_interleave(per_cluster), ids.repeat_interleave(per_cluster)


def terms_and_gradient(form, x, labels, clusters, variance, scale):
    """Both forms' terms, and the gradient of an objective that uses all three of them."""
    x = x.clone().requires_grad_(True)
    layout = batch_clusters(labels, clusters, estimate_variance=variance is None)
    if form == "cpu":
        terms = ClusterTerms(*CPUClusterTerms.apply(x, layout, variance, scale))
    else:
        terms = autograd_cluster_terms(x, layout, variance, scale)
    weights = torch.linspace(0.2, 1.0, len(x), dtype=x.dtype)
    objective = (
        (weights * torch.relu(terms.own + 1.0 + terms.impostors)).sum()
        + (weights.flip(0) * terms.impostors).sum()
        + 0.3 * terms.variance
    )
    objective.backward()
    return terms, x.grad


def graph_nodes(node) -> set[str]:
    """The names of every autograd node behind ``node``."""
    names, todo = set(), [node]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo += [child for child, _ in node.next_functions]
    return names


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variance", [None, 0.7])
@pytest.mark.parametrize("scale", [1.0, 3.52])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_the_cpu_form_matches_autograd(layout, variance, scale, dtype, tolerance):
    x, labels, clusters = batch(layout, dtype=dtype, offset=5.0)
    ours, our_grad = terms_and_gradient("cpu", x, labels, clusters, variance, scale)
    theirs, their_grad = terms_and_gradient("autograd", x, labels, clusters, variance, scale)
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.dtype == other.dtype == dtype
        torch.testing.assert_close(mine.detach(), other.detach(), rtol=tolerance, atol=tolerance)
    assert our_grad.dtype == dtype and our_grad.abs().sum() > 0
    scale_of = their_grad.abs().max()
    torch.testing.assert_close(our_grad / scale_of, their_grad / scale_of, rtol=0, atol=tolerance)


@pytest.mark.parametrize("variance", [None, 0.4])
def test_gradcheck_of_every_output(variance):
    x, labels, clusters = batch(LAYOUTS[1], per_cluster=3, dim=4, seed=5)
    layout = batch_clusters(labels, clusters, estimate_variance=variance is None)
    assert torch.autograd.gradcheck(
        lambda e: CPUClusterTerms.apply(e, layout, variance, 2.33), (x.requires_grad_(True),)
    )


def test_the_cpu_is_where_it_runs_and_a_second_derivative_is_refused():
    x, labels, clusters = batch(LAYOUTS[0])
    x.requires_grad_(True)
    loss = md.MagnetLoss()(x, labels, clusters)
    assert "CPUClusterTermsBackward" in graph_nodes(loss.grad_fn)
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        grad.sum().backward()


def test_half_precision_input_is_computed_in_float32():
    x, labels, clusters = batch(LAYOUTS[1], dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        low = x.to(dtype).requires_grad_(True)
        loss = md.MagnetLoss(reduction="none")(low, labels, clusters)
        assert loss.dtype == torch.float32
        loss.mean().backward()
        assert low.grad.dtype == dtype and torch.isfinite(low.grad).all()
        reference = md.MagnetLoss(reduction="none")(low.detach().float(), labels, clusters)
        torch.testing.assert_close(loss.detach(), reference)


def test_points_on_their_cluster_centre_have_finite_gradients_like_autograd():
    """Two clusters whose members coincide: distances of exactly 0 (and clamped ones)."""
    x, labels, clusters = batch(LAYOUTS[0], dim=3)
    x[:4] = x[0]  # cluster 0: four copies of one point
    ours, our_grad = terms_and_gradient("cpu", x, labels, clusters, None, 1.0)
    theirs, their_grad = terms_and_gradient("autograd", x, labels, clusters, None, 1.0)
    assert torch.isfinite(our_grad).all()
    torch.testing.assert_close(our_grad, their_grad)


@pytest.mark.parametrize("form", ["cpu", "autograd"])
def test_both_forms_refuse_the_same_batches(form):
    x, labels, clusters = batch(LAYOUTS[0])
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="embeddings must be finite"):
        terms_and_gradient(form, bad, labels, clusters, None, 1.0)
    collapsed = x.clone()
    for c in range(6):  # every member on its cluster's first point: s2 = 0
        collapsed[4 * c : 4 * c + 4] = collapsed[4 * c]
    with pytest.raises(ValueError, match="the batch variance s2 is 0"):
        terms_and_gradient(form, collapsed, labels, clusters, None, 1.0)


@pytest.mark.parametrize(
    "labels,clusters,message",
    [
        ([0, 0, 1], [0, 0, 1], r"clusters \[1\] have 1"),
        ([0, 1, 1, 1], [0, 0, 1, 1], r"clusters \[0\] hold examples of several labels"),
        ([2, 2, 2, 2], [0, 0, 1, 1], "at least two classes"),
        ([], [], "the batch is empty"),
    ],
)
def test_batch_clusters_refuses_degenerate_batches(labels, clusters, message):
    with pytest.raises(ValueError, match=message):
        batch_clusters(torch.tensor(labels, dtype=torch.int64), torch.tensor(clusters))


def test_overflow_gives_nan_silently_as_torch_does():
    """A diverged network's huge embeddings: NaN out (training then says it diverged), and no
    numpy RuntimeWarning on the user's terminal."""
    x, labels, clusters = batch(LAYOUTS[0], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = md.MagnetLoss()(x * 1e30, labels, clusters)
    assert not torch.isfinite(loss)
