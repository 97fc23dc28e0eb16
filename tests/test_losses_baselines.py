"""Every registered loss builds from the full loss config and back-propagates."""

import pytest
import torch

from magnetdml.losses import LOSSES, TripletLoss, build_loss

ALL_FIELDS = dict(alpha=1.5, margin=0.4, triplet_variant="ratio", normalize=True,
                  miner="batch_hard", impostor_fraction=0.5, positive_margin=0.1,
                  unrelated_field="ignored")

# None means "the loss's own default" for the baselines' shared fields (magnet's alpha, whose
# factory is not ours, always has a value).
UNSET = {key: None for key in ALL_FIELDS if key != "alpha"}


def _batch(requires_clusters):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 8, generator=g, requires_grad=True)
    if requires_clusters:  # Magnet layout: M = 6 clusters x D = 2 examples, 3 classes
        clusters = torch.arange(6).repeat_interleave(2)
        return x, (clusters // 2, clusters)
    return x, (torch.arange(3).repeat_interleave(4),)  # P = 3 classes x K = 4 examples


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("fields", [ALL_FIELDS, UNSET, {}])
def test_every_loss_builds_and_backpropagates(name, fields):
    loss_fn = build_loss(name, embedding_dim=8, num_classes=3, **fields)
    x, targets = _batch(loss_fn.requires_clusters)
    loss = loss_fn(x, *targets)
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(x.grad.abs().sum() > 0)
    for parameter in loss_fn.parameters():  # softmax's classifier learns too
        assert parameter.grad is not None


def test_registered_names_and_fields_reach_the_loss():
    assert {"softmax", "triplet", "contrastive", "lifted", "cluster_nca", "magnet"} <= set(
        LOSSES.names())
    triplet = build_loss("triplet", embedding_dim=8, num_classes=3, **ALL_FIELDS)
    assert (triplet.margin, triplet.variant, triplet.normalize, triplet.miner,
            triplet.impostor_fraction) == (0.4, "ratio", True, "batch_hard", 0.5)
    default = TripletLoss()
    built = build_loss("triplet", embedding_dim=8, num_classes=3, margin=None, miner=None)
    assert (built.margin, built.miner) == (default.margin, default.miner)
    contrastive = build_loss("contrastive", embedding_dim=8, num_classes=3, **ALL_FIELDS)
    assert (contrastive.margin, contrastive.positive_margin) == (0.4, 0.1)
    assert build_loss("lifted", embedding_dim=8, num_classes=3, **ALL_FIELDS).margin == 0.4
    softmax = build_loss("softmax", embedding_dim=8, num_classes=3)
    assert softmax.classifier.weight.shape == (3, 8)
    with pytest.raises(ValueError, match="unknown loss 'npair'; valid names: .*cluster_nca"):
        build_loss("npair", embedding_dim=8, num_classes=3)
