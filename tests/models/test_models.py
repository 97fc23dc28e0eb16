"""Backbones and the embedding head: shapes, normalisation, gradients, sizes, errors."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from magnetdml.models import BACKBONES, EmbeddingNet, build_model

# Small but representative configurations of every CPU backbone.
CASES = [
    ("mlp", (1, 28, 28), {"hidden_sizes": (32, 16)}),
    ("mlp", (20,), {"hidden_sizes": (), "batch_norm": True}),
    ("small-cnn", (1, 28, 28), {"channels": (4, 8), "hidden": 16}),
    ("small-cnn", (1, 8, 8), {"channels": (4, 8), "hidden": 16, "batch_norm": True}),
    ("cifar-cnn", (3, 32, 32), {"channels": (4, 8, 16)}),
    ("cifar-cnn", (1, 13, 17), {"channels": (4, 8, 16), "convs_per_stage": 2}),
    ("cifar-cnn", (3, 32, 32), {"channels": (4, 8, 16), "norm": "group"}),
    ("cifar-cnn", (3, 32, 32), {"channels": (4, 8, 16), "norm": "none"}),
    ("resnet", (3, 32, 32), {"depth": 10, "width": 4}),
    ("resnet", (3, 96, 96), {"depth": 10, "width": 4}),
]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_lists_every_backbone():
    assert {
        "mlp",
        "small-cnn",
        "cifar-cnn",
        "resnet",
        "torchvision-googlenet",
        "torchvision-inception_v3",
        "torchvision-resnet50",
    } <= set(BACKBONES.names())


def test_unknown_backbone_error_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'; valid names: .*cifar-cnn.*mlp"):
        build_model("vgg", (3, 32, 32))


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
@pytest.mark.parametrize("normalize", [False, True])
def test_shapes_and_normalisation(name, shape, options, normalize):
    torch.manual_seed(0)
    net = build_model(name, shape, embedding_dim=5, normalize=normalize, **options)
    assert isinstance(net, EmbeddingNet) and net.embedding_dim == 5
    x = torch.randn(6, *shape)
    features = net.features(x)
    assert features.shape == (6, net.feature_dim) == (6, net.backbone.feature_dim)
    r = net(x)
    assert r.shape == (6, 5) and r.dtype == torch.float32
    if normalize:
        torch.testing.assert_close(r.norm(dim=1), torch.ones(6))
        torch.testing.assert_close(r, nn.functional.normalize(net.head(features), dim=1))
    else:
        assert not torch.allclose(r.norm(dim=1), torch.ones(6))
        torch.testing.assert_close(r, net.head(features))


@pytest.mark.parametrize(("name", "shape", "options"), CASES)
def test_gradients_reach_every_parameter_and_the_input(name, shape, options):
    torch.manual_seed(0)
    net = build_model(name, shape, embedding_dim=3, **options).train()
    # ResNet zero-initialises each block's last BN scale, which by design blocks the gradient
    # into the residual branch at step 0 (test_resnet_blocks_start_as_identity); undo it here.
    for module in net.modules():
        if hasattr(module, "bn2"):
            nn.init.ones_(module.bn2.weight)
    x = torch.randn(4, *shape, requires_grad=True)
    net(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_resnet_blocks_start_as_identity():
    net = build_model("resnet", (3, 32, 32), depth=18, width=4).eval()
    block = net.backbone.blocks[0]  # stage 1, identity shortcut
    x = torch.rand(2, 4, 8, 8)  # non-negative, as after the stem's ReLU
    torch.testing.assert_close(block(x), x)


def test_parameter_counts_match_hand_formulas():
    mlp = build_model("mlp", (1, 28, 28), embedding_dim=64, hidden_sizes=(256, 128))
    assert n_params(mlp) == (784 * 256 + 256) + (256 * 128 + 128) + (128 * 64 + 64)
    cnn = build_model("small-cnn", (1, 28, 28), embedding_dim=64)  # 28 -> 14 -> 7
    assert n_params(cnn) == (
        (25 * 32 + 32) + (25 * 32 * 64 + 64) + (64 * 7 * 7 * 256 + 256) + (256 * 64 + 64)
    )
    cifar = build_model("cifar-cnn", (3, 32, 32), embedding_dim=64)  # conv (no bias) + BN
    assert n_params(cifar) == (
        (27 * 32 + 64) + (9 * 32 * 64 + 128) + (9 * 64 * 128 + 256) + (128 * 64 + 64)
    )


@pytest.mark.parametrize(("depth", "torchvision_count"), [(18, 11_689_512), (34, 21_797_672)])
def test_resnet_matches_torchvision_parameter_count(depth, torchvision_count):
    # torchvision's counts (published) minus its 1000-way fc, with the 7x7 ImageNet stem.
    net = build_model("resnet", (3, 224, 224), embedding_dim=64, depth=depth)
    assert net.feature_dim == 512
    assert n_params(net.backbone) == torchvision_count - (512 * 1000 + 1000)
    # The CIFAR stem swaps the 7x7x3x64 conv for a 3x3x3x64 conv.
    small = build_model("resnet", (3, 32, 32), embedding_dim=64, depth=depth)
    assert n_params(small.backbone) == n_params(net.backbone) - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64


def test_resnet_stem_follows_image_size():
    assert build_model("resnet", (3, 32, 32), depth=10, width=4).backbone.stem[0].stride == (1, 1)
    assert build_model("resnet", (3, 96, 96), depth=10, width=4).backbone.stem[0].stride == (2, 2)
    forced = build_model("resnet", (3, 32, 32), depth=10, width=4, stem="imagenet")
    assert forced.backbone.stem[0].kernel_size == (7, 7)


def test_seed_fixes_the_initialisation_without_touching_the_global_rng():
    state = torch.random.get_rng_state()
    a = build_model("small-cnn", (1, 8, 8), seed=3, channels=(2, 4), hidden=8)
    b = build_model("small-cnn", (1, 8, 8), seed=3, channels=(2, 4), hidden=8)
    c = build_model("small-cnn", (1, 8, 8), seed=4, channels=(2, 4), hidden=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name  # every small-cnn parameter is drawn at random
    with pytest.raises(ValueError, match="seed must be >= 0; got -1"):
        build_model("mlp", (4,), seed=-1)


def test_mlp_options_build_the_layers_they_name():
    net = build_model("mlp", (10,), hidden_sizes=[8], batch_norm=True, dropout=0.5)
    kinds = [type(m) for m in net.backbone.layers]
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    net.eval()  # dropout off, BN uses running stats: deterministic
    x = torch.randn(3, 10)
    torch.testing.assert_close(net(x), net(x))


@pytest.mark.parametrize(
    ("name", "shape", "options", "exception", "match"),
    [
        (
            "small-cnn",
            (784,),
            {},
            ValueError,
            r"'small-cnn' needs images: input_shape must be "
            r"\(C, H, W\).*got \(784,\)",
        ),
        ("small-cnn", (1, 128, 128), {}, ValueError, r"at most 64x64.*use 'cifar-cnn' or 'resnet'"),
        (
            "small-cnn",
            (1, 3, 3),
            {},
            ValueError,
            r"at least 4x4 pixels; got input_shape \(1, 3, 3\)",
        ),
        ("cifar-cnn", (3, 2, 32), {}, ValueError, r"at least 4x4"),
        (
            "cifar-cnn",
            (3, 32, 32),
            {"norm": "layer"},
            ValueError,
            r"norm must be one of 'batch', 'group', 'none'; got 'layer'",
        ),
        ("resnet", (3, 4, 4), {}, ValueError, r"'resnet' needs images of at least 8x8"),
        ("resnet", (3, 16, 16), {"stem": "imagenet"}, ValueError, r"ImageNet stem needs .* 32x32"),
        (
            "resnet",
            (3, 32, 32),
            {"depth": 50},
            ValueError,
            r"depth must be one of 10, 18, 34; got 50",
        ),
        ("mlp", (0, 4), {}, ValueError, r"positive ints.*got \(0, 4\)"),
        ("mlp", "784", {}, TypeError, r"input_shape must be a tuple of ints"),
        ("mlp", (4,), {"dropout": 1.5}, ValueError, r"dropout must be <= 0.99"),
        ("mlp", (4,), {"hidden_sizes": (8, 0)}, ValueError, r"hidden_sizes must hold ints >= 1"),
        (
            "mlp",
            (4,),
            {"hiden_sizes": (8,)},
            TypeError,
            r"'mlp' got unknown option\(s\) hiden_sizes; valid options: hidden_sizes, batch_norm",
        ),
    ],
)
def test_invalid_input_shapes_and_options_are_explained(name, shape, options, exception, match):
    with pytest.raises(exception, match=match):
        build_model(name, shape, **options)


def test_head_options_are_validated():
    with pytest.raises(ValueError, match=r"embedding_dim must be >= 1; got 0"):
        build_model("mlp", (4,), embedding_dim=0)
    with pytest.raises(TypeError, match=r"normalize must be True or False; got 'yes'"):
        build_model("mlp", (4,), normalize="yes")


def test_forward_rejects_input_of_another_shape():
    net = build_model("mlp", (1, 8, 8), hidden_sizes=(4,))
    with pytest.raises(ValueError, match=r"input must have shape \(B, 1, 8, 8\).*got \(2, 64\)"):
        net(torch.randn(2, 64))


@pytest.mark.slow
def test_core_import_never_imports_torchvision():
    code = (
        "import sys, magnetdml.models; "
        "sys.exit(1 if any(m.startswith('torchvision') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_torchvision_backbone_without_torchvision_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(
        ImportError,
        match=r"'torchvision-resnet50' needs torchvision.*"
        r"'pretrained' extra.*magnetdml\[pretrained\]",
    ):
        build_model("torchvision-resnet50", (3, 224, 224))


class _FakeResNet50(nn.Module):
    """Stands in for torchvision's resnet50 (same ``fc`` convention) in a fake module."""

    def __init__(self, weights=None):
        super().__init__()
        assert weights is None  # the factory must never ask torchvision for hub weights
        self.conv = nn.Conv2d(3, 6, 3)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(6, 1000)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)))


@pytest.fixture
def fake_torchvision(monkeypatch):
    models = types.ModuleType("torchvision.models")
    models.resnet50 = _FakeResNet50
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


def test_torchvision_backbone_loads_local_weights_and_drops_the_classifier(
    fake_torchvision, tmp_path
):
    source = _FakeResNet50()
    path = tmp_path / "resnet50.pth"
    torch.save(source.state_dict(), path)
    net = build_model("torchvision-resnet50", (3, 40, 40), embedding_dim=7, weights_path=path)
    assert net.feature_dim == 6 and isinstance(net.backbone.fc, nn.Identity)
    torch.testing.assert_close(net.backbone.conv.weight, source.conv.weight)
    x = torch.randn(2, 3, 40, 40)
    torch.testing.assert_close(net.features(x), source.pool(source.conv(x)))
    assert net(x).shape == (2, 7)


def test_torchvision_backbone_weight_errors(fake_torchvision, tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"weights_path .* does not exist.*nothing is "
        r"downloaded",
    ):
        build_model("torchvision-resnet50", (3, 64, 64), weights_path=tmp_path / "none.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(6, 3, 3, 3), "extra": torch.zeros(1)}, wrong)
    with pytest.raises(
        ValueError,
        match=r"does not fit 'torchvision-resnet50': missing "
        r"\['conv.bias'\], unexpected \['extra'\]",
    ):
        build_model("torchvision-resnet50", (3, 64, 64), weights_path=wrong)
    with pytest.raises(ValueError, match=r"needs 3-channel images.*ImageNet backbones"):
        build_model("torchvision-resnet50", (1, 64, 64))


@pytest.mark.parametrize(
    ("norm", "independent"), [("batch", False), ("group", True), ("none", True)]
)
def test_cifar_cnn_group_norm_embeds_each_image_on_its_own_in_training(norm, independent):
    """BatchNorm mixes the images of a training batch (a Magnet neighbourhood); GroupNorm and
    no normalisation do not, so an image's embedding ignores its batch companions."""
    torch.manual_seed(0)
    net = build_model("cifar-cnn", (3, 16, 16), embedding_dim=8, channels=(8, 16), norm=norm)
    net.train()
    x = torch.randn(6, 3, 16, 16)
    alone, together = net(x[:3]), net(torch.cat([x[:3], 5 + x[3:]]))[:3]
    assert torch.allclose(alone, together, atol=1e-5) == independent
