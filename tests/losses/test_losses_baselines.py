"""Every registered loss builds from the loss-config fields it reads, refuses the ones it
does not read, and back-propagates."""

import pytest
import torch

from magnetdml.losses import LOSSES, UNSET, TripletLoss, build_loss, loss_spec

OWN_FIELDS = dict(
    alpha=1.5,
    scale=2.0,
    margin=0.4,
    triplet_variant="ratio",
    normalize=True,
    miner="batch_hard",
    impostor_fraction=0.5,
    positive_margin=0.1,
)


def _own(name):
    """The fields of OWN_FIELDS that loss ``name`` reads."""
    return {k: v for k, v in OWN_FIELDS.items() if k in loss_spec(name).fields}


def _batch(uses_index):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 8, generator=g, requires_grad=True)
    if uses_index:  # Magnet layout: M = 6 clusters x D = 2 examples, 3 classes
        clusters = torch.arange(6).repeat_interleave(2)
        return x, (clusters // 2, clusters)
    return x, (torch.arange(3).repeat_interleave(4),)  # P = 3 classes x K = 4 examples


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("fields", ["own", "unset", "none"])
def test_every_loss_builds_and_backpropagates(name, fields):
    given = {"own": _own(name), "unset": dict(UNSET), "none": {}}[fields]
    loss_fn = build_loss(name, embedding_dim=8, num_classes=3, **given)
    x, targets = _batch(loss_spec(name).uses_index)
    loss = loss_fn(x, *targets)
    if loss.ndim:  # cluster losses built directly keep reduction "mean"
        loss = loss.mean()
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(x.grad.abs().sum() > 0)
    for parameter in loss_fn.parameters():  # softmax's classifier learns too
        assert parameter.grad is not None


def test_registered_names_and_fields_reach_the_loss():
    assert {"softmax", "triplet", "contrastive", "lifted", "cluster_nca", "magnet"} <= set(
        LOSSES.names()
    )
    triplet = build_loss("triplet", embedding_dim=8, num_classes=3, **_own("triplet"))
    assert (
        triplet.margin,
        triplet.variant,
        triplet.normalize,
        triplet.miner,
        triplet.impostor_fraction,
    ) == (0.4, "ratio", True, "batch_hard", 0.5)
    default = TripletLoss()
    built = build_loss("triplet", embedding_dim=8, num_classes=3, margin=None, miner=None)
    assert (built.margin, built.miner) == (default.margin, default.miner)
    contrastive = build_loss("contrastive", embedding_dim=8, num_classes=3, **_own("contrastive"))
    assert (contrastive.margin, contrastive.positive_margin) == (0.4, 0.1)
    assert build_loss("lifted", embedding_dim=8, num_classes=3, **_own("lifted")).margin == 0.4
    magnet = build_loss("magnet", embedding_dim=8, num_classes=3, **_own("magnet"))
    assert (magnet.alpha, magnet.scale) == (1.5, 2.0)
    softmax = build_loss("softmax", embedding_dim=8, num_classes=3)
    assert softmax.classifier.weight.shape == (3, 8)


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_field_the_loss_does_not_read_is_refused_not_ignored(name):
    for field, value in OWN_FIELDS.items():
        if field in loss_spec(name).fields:
            continue
        with pytest.raises(
            ValueError,
            match=rf"loss\.{field} does not apply to loss '{name}' "
            r"\(it is read by .*\); got",
        ):
            build_loss(name, embedding_dim=8, num_classes=3, **{field: value})


def test_unknown_names_and_keywords_get_one_line_with_a_suggestion():
    with pytest.raises(
        ValueError, match="unknown loss 'npair'; valid names: .*cluster_nca.*or pml:CLASSNAME"
    ):
        build_loss("npair", embedding_dim=8, num_classes=3)
    with pytest.raises(ValueError, match="unknown loss 'magent'; did you mean 'magnet'"):
        build_loss("magent", embedding_dim=8, num_classes=3)
    with pytest.raises(TypeError, match="unknown keyword 'alpah'; did you mean 'alpha'"):
        build_loss("magnet", embedding_dim=8, num_classes=3, alpah=5)
    with pytest.raises(
        ValueError,
        match=r"loss\.scale does not apply to loss 'triplet' "
        r"\(it is read by cluster_nca, magnet\)",
    ):
        build_loss("triplet", embedding_dim=8, num_classes=3, scale=2.0)


def test_the_loss_configs_defaults_are_the_unset_values():
    from dataclasses import fields

    from magnetdml.training.config import LossConfig

    assert {f.name: f.default for f in fields(LossConfig) if f.name != "name"} == UNSET
