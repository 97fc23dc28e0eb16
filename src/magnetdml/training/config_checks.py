"""The rules of a config that relate fields (``Config.validate`` checks each field's own rule
first): the loss exists and builds with the fields it is given, the batches suit the loss, the
plots have their final embeddings, and the device is one torch names."""

from __future__ import annotations


def check_relations(config) -> None:
    """Raise ``ValueError`` naming the fields, the rule and the fix for the first rule of
    ``config`` (a ``Config``; not imported, since config.py calls this) that is broken."""
    config.data.loader_options()
    config.model.backbone_options()
    _check_loss(config)
    _check_batches(config.loss.name, config.sampler.batches)
    if config.eval.plots and not config.eval.final:
        raise ValueError(
            "eval.plots draws the final test embeddings, so it needs "
            "eval.final true; got eval.final false: add --eval.plots false"
        )
    device = config.train.device
    if not (device in ("cpu", "cuda", "auto") or device.startswith("cuda:")):
        raise ValueError(f"train.device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r}")


def _check_loss(config) -> None:
    """The loss exists, every field it is given applies to it, and it builds (a ``pml:``
    loss's options are checked against its constructor)."""
    import torch

    from ..losses import build_loss

    try:
        spec = config.loss.spec()
    except ValueError as error:
        raise ValueError(f"loss.name: {error}") from None
    if config.loss.parameter_lr is not None:
        if not spec.has_parameters:
            raise ValueError(
                f"loss.parameter_lr applies to losses with parameters of their own "
                f"(softmax, proxy losses); loss {spec.name!r} has none: drop it"
            )
    with torch.random.fork_rng(devices=[]):  # a loss with weights draws them
        build_loss(
            spec.name,
            embedding_dim=config.model.embedding_dim,
            num_classes=2,
            **config.loss.fields(),
        )


def _check_batches(loss: str, batches: str) -> None:
    """Cluster losses train on neighbourhoods only; the other losses on anything but."""
    from ..losses import loss_spec

    own = loss_spec(loss).batches
    if batches in ("auto", own):
        return
    if own == "neighbourhood":
        raise ValueError(
            f"sampler.batches must be 'auto' or 'neighbourhood' for loss {loss!r} "
            "(a cluster loss trains on neighbourhoods of M clusters x D examples "
            f"from its index); got {batches!r}"
        )
    if batches == "neighbourhood":
        raise ValueError(
            f"sampler.batches 'neighbourhood' needs a cluster loss (magnet, "
            f"cluster_nca) and loss {loss!r} has no cluster index; use 'auto', "
            "'class_balanced' or 'uniform'"
        )
