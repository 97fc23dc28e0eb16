"""The faster eval-mode forward: same function as ``model.eval(); model(x)``, training model
untouched, BatchNorm folded only where it is exact, fallback for ops oneDNN lacks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from magnetdml.models import build_model
from magnetdml.models.inference import InferenceForward, fold_batch_norm

ONEDNN = torch.backends.mkldnn.is_available()
# Every CPU backbone, with and without BatchNorm, odd image sizes and the residual adds.
CASES = [
    ("mlp", (1, 28, 28), {"hidden_sizes": (32, 16)}),
    ("mlp", (20,), {"hidden_sizes": (16,), "batch_norm": True}),
    ("small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16}),
    ("small-cnn", (1, 9, 11), {"channels": (4, 8), "hidden": 16, "batch_norm": True}),
    ("cifar-cnn", (3, 32, 32), {"channels": (4, 8, 16)}),
    ("cifar-cnn", (1, 13, 17), {"channels": (4, 8, 16), "convs_per_stage": 2}),
    ("resnet", (3, 32, 32), {"depth": 10, "width": 4}),
    ("resnet", (3, 96, 96), {"depth": 10, "width": 4}),
]


def trained_like(name, shape, options, normalize=False) -> nn.Module:
    """A model whose BatchNorms hold non-trivial statistics, as after training, in eval mode
    (the fresh ones are the identity map, which would hide a wrong fold)."""
    net = build_model(name, shape, embedding_dim=6, normalize=normalize, seed=0, **options)
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return net.eval()


def reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The plain forward the fast path must reproduce."""
    net.eval()
    with torch.no_grad():
        return net(x)


def assert_same_embeddings(fast: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal up to float rounding: within 1e-5 of the embedding's scale."""
    assert fast.shape == ref.shape and fast.dtype == ref.dtype == torch.float32
    assert not fast.is_mkldnn
    scale = float(ref.abs().max())
    assert float((fast - ref).abs().max()) <= 1e-5 * scale, float((fast - ref).abs().max())


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
@pytest.mark.parametrize("normalize", [False, True])
def test_same_embeddings_as_the_plain_eval_forward(name, shape, options, normalize):
    net = trained_like(name, shape, options, normalize)
    x = torch.randn(37, *shape, generator=torch.Generator().manual_seed(2))
    forward = InferenceForward(net)
    with torch.inference_mode():
        fast = forward(x)
    assert_same_embeddings(fast, reference(net, x))
    # image backbones must really take the oneDNN path (a silent fallback would cost 2x)
    assert forward.onednn == (ONEDNN and name != "mlp")


def test_the_training_model_is_left_untouched():
    net = trained_like("cifar-cnn", (3, 32, 32), {"channels": (4, 8, 16)})
    before = copy.deepcopy(net.state_dict())
    modules = [type(m) for m in net.modules()]
    forward = InferenceForward(net)
    assert forward.model is not net  # BatchNorm is folded in a copy
    with torch.inference_mode():
        forward(torch.randn(4, 3, 32, 32))
    assert [type(m) for m in net.modules()] == modules
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fold_only_where_it_is_exact():
    plain = build_model("small-cnn", (1, 28, 28), channels=(4, 8), hidden=16, seed=0).eval()
    assert fold_batch_norm(plain) is plain  # nothing to fold: no copy
    with_bn = trained_like(
        "small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16, "batch_norm": True}
    )
    folded = fold_batch_norm(with_bn)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    # in training mode BatchNorm uses the batch's statistics: not an affine map, never folded
    assert fold_batch_norm(with_bn.train()) is with_bn
    # without running statistics it normalises by the batch even in eval mode
    batch_stats = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    assert fold_batch_norm(batch_stats.eval()) is batch_stats


class _ViewNet(nn.Module):
    """A conv net whose ``view`` has no oneDNN kernel: the pass must fall back, not fail."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).view(x.shape[0], -1))


def test_an_op_without_a_onednn_kernel_falls_back_to_the_plain_layout():
    torch.manual_seed(0)
    net = _ViewNet().eval()
    x = torch.randn(7, 1, 8, 8)
    forward = InferenceForward(net)
    with torch.inference_mode():
        fast = [forward(x), forward(x)]
    assert not forward.onednn
    for out in fast:
        assert_same_embeddings(out, reference(net, x))


def test_a_real_error_is_raised_not_swallowed():
    net = build_model("small-cnn", (1, 28, 28), channels=(4, 8), hidden=16, seed=0).eval()
    with (
        pytest.raises(ValueError, match=r"input must have shape \(B, 1, 28, 28\)"),
        torch.inference_mode(),
    ):
        InferenceForward(net)(torch.randn(2, 1, 27, 28))


# ---------------------------------------------------------------------------- bfloat16
BFLOAT16_KERNELS = ONEDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
def test_bfloat16_embeddings_are_float32_within_bfloat16_rounding(name, shape, options):
    net = trained_like(name, shape, options, normalize=False)
    x = torch.randn(37, *shape, generator=torch.Generator().manual_seed(2))
    forward = InferenceForward(net, "bfloat16")
    with torch.inference_mode():
        low = forward(x)
    ref = reference(net, x)
    assert low.shape == ref.shape and low.dtype == torch.float32 and not low.is_mkldnn
    error = float((low - ref).abs().max()) / float(ref.abs().max())
    # bfloat16 keeps 8 significant bits (relative 2^-8 = 0.4% per rounding): a few layers'
    # roundings stay within a few percent, and it must really be bfloat16 (not float32)
    assert 1e-5 < error < 0.05, error


def test_bfloat16_takes_onednn_bfloat16_kernels_where_the_cpu_has_them():
    net = trained_like("small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16})
    forward = InferenceForward(net, "bfloat16")
    assert forward.onednn == BFLOAT16_KERNELS  # never oneDNN's slow emulation
    with torch.inference_mode():
        forward(torch.randn(5, 1, 28, 28))
    assert forward.onednn == BFLOAT16_KERNELS  # and no fallback on the first batch


def test_bfloat16_leaves_the_training_model_untouched():
    net = trained_like("small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16})
    before = copy.deepcopy(net.state_dict())
    with torch.inference_mode():
        InferenceForward(net, "bfloat16")(torch.randn(4, 1, 28, 28))
    for key, value in net.state_dict().items():
        assert value.dtype == torch.float32 and not value.is_mkldnn, key
        assert torch.equal(value, before[key]), key


def test_bfloat16_falls_back_to_autocast_for_an_op_without_a_onednn_kernel():
    torch.manual_seed(0)
    net = _ViewNet().eval()
    x = torch.randn(7, 1, 8, 8)
    forward = InferenceForward(net, "bfloat16")
    with torch.inference_mode():
        outs = [forward(x), forward(x)]
    assert not forward.onednn
    ref = reference(net, x)
    for out in outs:
        assert out.dtype == torch.float32
        assert 0 < float((out - ref).abs().max()) < 0.05 * float(ref.abs().max())


def test_an_unknown_precision_is_refused():
    net = build_model("small-cnn", (1, 28, 28), channels=(4, 8), hidden=16, seed=0)
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'bfloat16'\)"):
        InferenceForward(net, "float16")


def test_bfloat16_on_a_cpu_without_its_kernels_is_warned_about(monkeypatch):
    import magnetdml.models.inference as inference

    cpu = torch.device("cpu")
    monkeypatch.setattr(inference, "_has_bfloat16_kernels", lambda: False)
    warning = inference.slow_bfloat16("bfloat16", cpu)
    assert warning.startswith("warning: index.refresh_precision bfloat16") and "\n" not in warning
    assert "--index.refresh_precision float32" in warning
    assert inference.slow_bfloat16("float32", cpu) is None
    assert inference.slow_bfloat16("bfloat16", torch.device("cuda")) is None
    monkeypatch.setattr(inference, "_has_bfloat16_kernels", lambda: True)
    assert inference.slow_bfloat16("bfloat16", cpu) is None
