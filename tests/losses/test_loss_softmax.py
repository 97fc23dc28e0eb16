"""SoftmaxLoss: cross-entropy through the module's own linear layer on the embedding."""

import math

import pytest
import torch

from magnetdml.losses import SoftmaxLoss


def _setup(seed=0, embedding_dim=4, num_classes=3, batch=6):
    g = torch.Generator().manual_seed(seed)
    loss_fn = SoftmaxLoss(embedding_dim, num_classes).double()
    with torch.no_grad():  # explicit weights: no reliance on the global generator
        loss_fn.classifier.weight.copy_(torch.randn(num_classes, embedding_dim, generator=g))
        loss_fn.classifier.bias.copy_(torch.randn(num_classes, generator=g))
    x = torch.randn(batch, embedding_dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (batch,), generator=g)
    return loss_fn, x, labels


def test_matches_loop_reference():
    loss_fn, x, labels = _setup()
    w, b = loss_fn.classifier.weight.tolist(), loss_fn.classifier.bias.tolist()
    expected = []
    for row, label in zip(x.tolist(), labels.tolist(), strict=True):
        logits = [sum(wk * xk for wk, xk in zip(w[c], row, strict=True)) + b[c] for c in range(3)]
        expected.append(-logits[label] + math.log(sum(math.exp(v) for v in logits)))
    loss_fn.reduction = "none"
    torch.testing.assert_close(loss_fn(x, labels), torch.tensor(expected, dtype=torch.float64))
    loss_fn.reduction = "mean"
    assert math.isclose(loss_fn(x, labels).item(), sum(expected) / 6, rel_tol=1e-12)


def test_owns_trainable_classifier_and_gradcheck():
    loss_fn, x, labels = _setup(1)
    assert {name for name, _ in loss_fn.named_parameters()} == {
        "classifier.weight",
        "classifier.bias",
    }
    x.requires_grad_(True)
    w, b = loss_fn.classifier.weight, loss_fn.classifier.bias

    def through_params(e, w_, b_):
        params = {"classifier.weight": w_, "classifier.bias": b_}
        return torch.func.functional_call(loss_fn, params, (e, labels))

    assert torch.autograd.gradcheck(
        through_params,
        (x, w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)),
    )
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x,))
    loss_fn(x, labels).backward()
    assert w.grad is not None and bool(w.grad.abs().sum() > 0)


def test_single_class_batch_is_fine_and_half_input_is_float32():
    loss_fn, x, _ = _setup(2)
    assert math.isfinite(loss_fn(x, torch.zeros(6, dtype=torch.long)).item())
    assert SoftmaxLoss(4, 3)(x.half(), torch.zeros(6, dtype=torch.long)).dtype == torch.float32


def test_errors():
    loss_fn, x, labels = _setup()
    with pytest.raises(
        ValueError,
        match=r"labels must lie in \[0, num_classes=3\); got values "
        r"in \[0, 3\]",
    ):
        loss_fn(x, torch.tensor([0, 1, 2, 3, 0, 0]))
    with pytest.raises(ValueError, match="embeddings must have 4 columns .*got 5"):
        loss_fn(torch.zeros(6, 5, dtype=torch.float64), labels)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        SoftmaxLoss(4, 1)
    with pytest.raises(TypeError, match="embedding_dim must be an integer"):
        SoftmaxLoss(4.0, 3)
