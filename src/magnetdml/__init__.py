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

from . import _moved
from .clustering import ClusterIndex
from .data import DATASETS, DatasetSplits, RandomRescaleCrop, load_dataset
from .evaluation import KNearestClusters, SoftKNN, evaluate
from .losses import (
    LOSSES,
    ClusterNCALoss,
    ContrastiveLoss,
    LiftedStructureLoss,
    MagnetLoss,
    SoftmaxLoss,
    TripletLoss,
    build_loss,
    magnet_loss_terms,
)
from .models import BACKBONES, EmbeddingNet, build_model
from .sampling import ClassBalancedSampler, NeighbourhoodSampler, UniformSampler

__version__ = "0.1.0"

_moved.install()   # the flat layout's module paths (magnetdml.runs, ...) keep working

_TRAINING = {"Config", "TrainResult", "train", "apply_overrides", "load_config_file"}


def __getattr__(name: str):
    # The training layer pulls in matplotlib and tqdm; import it only when asked for.
    if name in _TRAINING:
        from . import training
        return getattr(training, name)
    raise AttributeError(f"module 'magnetdml' has no attribute {name!r}")


__all__ = ["BACKBONES", "DATASETS", "LOSSES", "ClassBalancedSampler", "ClusterIndex",
           "ClusterNCALoss", "Config", "ContrastiveLoss", "DatasetSplits", "EmbeddingNet",
           "KNearestClusters", "LiftedStructureLoss", "MagnetLoss", "NeighbourhoodSampler",
           "RandomRescaleCrop", "SoftKNN", "SoftmaxLoss", "TrainResult", "TripletLoss",
           "UniformSampler", "__version__", "apply_overrides", "build_loss", "build_model",
           "evaluate", "load_config_file", "load_dataset", "magnet_loss_terms", "train"]
