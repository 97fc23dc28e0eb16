"""magnetdml: deep distance metric learning with Magnet Loss (Rippel et al., ICLR 2016).

The layers, lowest first (a module imports only from layers below its own):

1. ``losses`` -- pure ``torch.nn.Module`` losses;
2. ``clustering`` (k-means, agglomerative, the cluster index) and ``sampling`` (the
   neighbourhood, class-balanced and uniform samplers);
3. ``evaluation`` -- kNC, kNN, retrieval and clustering metrics;
4. ``data`` and ``models``;
5. ``training`` -- the config tree, the loop, run folders, checkpoints, finished runs;
6. ``reporting`` (report pages, figures), ``experiments`` (the paper's experiments, the loss
   comparison, the hyperparameter search) and ``cli`` (the ``magnetdml`` command line).

``_validation``, ``registry`` and ``_figures`` are small helpers every layer may use.
"""

from ._version import __version__

#: public name -> the subpackage it comes from. Imported on first use (PEP 562): torch, faiss
#: and matplotlib load only when a name that needs them is touched, so that e.g.
#: ``magnetdml --help`` answers at once.
_EXPORTS = {
    "ClusterIndex": "clustering",
    **dict.fromkeys(("DATASETS", "DatasetSplits", "RandomRescaleCrop", "load_dataset"), "data"),
    **dict.fromkeys(("KNearestClusters", "SoftKNN", "evaluate"), "evaluation"),
    **dict.fromkeys(
        (
            "LOSSES",
            "ClusterNCALoss",
            "ContrastiveLoss",
            "LiftedStructureLoss",
            "MagnetLoss",
            "SoftmaxLoss",
            "TripletLoss",
            "build_loss",
            "magnet_loss_terms",
        ),
        "losses",
    ),
    **dict.fromkeys(("BACKBONES", "EmbeddingNet", "build_model"), "models"),
    **dict.fromkeys(("ClassBalancedSampler", "NeighbourhoodSampler", "UniformSampler"), "sampling"),
    **dict.fromkeys(
        ("Config", "TrainResult", "train", "apply_overrides", "load_config_file"), "training"
    ),
    "load_run": "training.runs",
    "embed": "training.embed",  # the function (training.embed is also its module)
    "MagnetTraining": "training.magnet_training",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'magnetdml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "BACKBONES",
    "DATASETS",
    "LOSSES",
    "ClassBalancedSampler",
    "ClusterIndex",
    "ClusterNCALoss",
    "Config",
    "ContrastiveLoss",
    "DatasetSplits",
    "EmbeddingNet",
    "KNearestClusters",
    "LiftedStructureLoss",
    "MagnetLoss",
    "MagnetTraining",
    "NeighbourhoodSampler",
    "RandomRescaleCrop",
    "SoftKNN",
    "SoftmaxLoss",
    "TrainResult",
    "TripletLoss",
    "UniformSampler",
    "__version__",
    "apply_overrides",
    "build_loss",
    "build_model",
    "embed",
    "evaluate",
    "load_config_file",
    "load_dataset",
    "load_run",
    "magnet_loss_terms",
    "train",
]
