"""The frozen config tree that drives the Python API, the CLI and every run's ``config.json``.

Each leaf field is settable on the command line as ``--section.field VALUE`` (for example
``--loss.alpha 1.0``) or from a YAML/JSON file with the same nesting. ``Config.validate``
checks every field once and raises a ``ValueError`` naming the field, the rule and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .._validation import check_choice, check_float, check_int


def parse_options(name: str, text: str, example: str) -> dict:
    """Parse a YAML mapping given as one command-line string ("" is no options)."""
    import yaml

    try:
        parsed = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a YAML mapping, e.g. '{example}'; got {text!r}")
    return parsed


@dataclass(frozen=True)
class DataConfig:
    """Which data to train on and how to split it."""

    name: str = "digits"              # a name of magnetdml.data.DATASETS
    data_dir: str | None = None       # folder with the dataset's files (not needed for digits)
    seed: int = 0                     # seeds the train/test/val and class splits
    val_fraction: float = 0.0         # fraction of train held out for hyperparameter search
    unseen_classes: float = 0.0       # fraction of classes held out entirely (class-disjoint)
    val_classes: float = 0.0          # fraction of the other classes held out as a class-
                                      # disjoint validation split (scored by MAP@R)
    collapse_pairs: bool = False      # train on random pairs of classes merged (paper §4.3)
    options: str = ""                 # loader options as YAML, e.g. "{unseen_alphabets: 0.2}"
    augment: bool = False             # paper §4: random rescale up to max_scale, crop back
    max_scale: float = 0.3            # augmentation: rescale by up to 1 + max_scale

    def loader_options(self) -> dict:
        """``options`` parsed: extra keyword arguments of this dataset's loader."""
        return parse_options("data.options", self.options, "{unseen_alphabets: 0.2, size: 28}")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone + linear embedding head (paper: embedding dimension 1024)."""

    backbone: str = "mlp"             # a name of magnetdml.models.BACKBONES
    embedding_dim: int = 64           # size of the embedding (paper: 1024)
    normalize: bool = False           # L2-normalise the embedding (on whenever the loss
                                      # normalises inside: triplet by default)
    options: str = ""                 # backbone options as YAML, e.g. "{hidden_sizes: [512]}"
    init_from: str = ""               # a run folder (or checkpoint.pt) whose final backbone
                                      # and head weights this run starts from (pretraining)

    def backbone_options(self) -> dict:
        """``options`` parsed: extra keyword arguments of this backbone's factory."""
        return parse_options("model.options", self.options, "{channels: [32, 64, 128]}")


@dataclass(frozen=True)
class LossConfig:
    """The loss and its hyperparameters. Each loss reads the fields it uses; ``None`` means
    that loss's own default (triplet margin 0.2, contrastive and lifted 1.0, ...)."""

    name: str = "magnet"                    # a name of magnetdml.losses.LOSSES
    alpha: float = 1.0                      # Magnet's margin, in units of the variance
    scale: float = 1.0                      # Magnet / cluster-NCA inverse temperature s on the
                                            # variance-normalised distances ("global scaling",
                                            # App. B; 1 = eq. 5); kNC uses sigma^2 / s
    margin: float | None = None             # triplet / contrastive / lifted margin
    positive_margin: float | None = None    # contrastive: positives pulled below this
    triplet_variant: str | None = None      # "hinge" (paper eq. 1) or "ratio" (seed 003)
    miner: str | None = None                # all | batch_hard | semi_hard | nearest_impostors
    impostor_fraction: float | None = None  # triplet: nearest impostor fraction (App. B)
    normalize: bool | None = None           # L2-normalise inside triplet-style losses

    def knc_variance(self, sigma2: float) -> float:
        """The kNC lengthscale consistent with training: ``sigma^2 / s``, ``sigma^2`` the
        running average of the batch variance ``s2`` (paper §3.3) and ``s`` the inverse
        temperature ``scale`` (``exp(-s d^2 / (2 sigma^2))`` is the training objective's own
        weighting of a cluster at squared distance ``d^2``)."""
        return float(sigma2) / self.scale


@dataclass(frozen=True)
class IndexConfig:
    """The cluster index of paper §3.2 (k-means per class, refreshed during training)."""

    clusters_per_class: int = 4       # K (fewer for classes with fewer examples)
    method: str = "kmeans"            # "kmeans" or "agglomerative" (seed 000)
    distance_threshold: float = 1.0   # agglomerative cut, relative to the intra-class spread
    refresh_every: int = 0            # iterations between refreshes; 0 = every epoch
    drift_threshold: float = 0.0      # > 0: refresh when a probe set drifts more (adaptive)
    refresh_lag: int = 0              # > 0: embed a weight snapshot on another thread and
                                      # swap the index in this many iterations later


@dataclass(frozen=True)
class SamplerConfig:
    """Batch composition: M clusters x D examples (cluster losses), P classes x K examples
    (triplet, contrastive, lifted), or uniformly shuffled batches (softmax)."""

    batches: str = "auto"             # auto (the loss's own: neighbourhood for cluster losses,
                                      # uniform for softmax, class_balanced for the others),
                                      # class_balanced or uniform
    clusters_per_batch: int = 12      # M (paper's best: 12)
    examples_per_cluster: int = 4     # D (paper's best: 4)
    impostors: str = "nearest"        # "nearest" (paper) or "random" (ablation)
    classes_per_batch: int = 8        # P, for losses without a cluster index (P*K = 48 = M*D,
    examples_per_class: int = 6       # K, the same images per step; P <= 10 fits CIFAR/MNIST)
    batch_size: int = 0               # uniform batches; 0 = P * K, the baselines' batch size

    def batch_protocol(self, loss: str) -> str:
        """``batches`` with ``auto`` resolved for ``loss`` (a name of LOSSES)."""
        from ..losses import default_batches

        return default_batches(loss) if self.batches == "auto" else self.batches


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper App. B: SGD, momentum 0.9, per-epoch annealing)."""

    epochs: int = 30                  # epochs to train (one pass, or iterations_per_epoch)
    iterations_per_epoch: int = 0     # 0 = training examples // batch size
    optimizer: str = "sgd"            # "sgd" or "adam"
    lr: float = 0.05                  # learning rate
    momentum: float = 0.9             # SGD momentum (paper: 0.9)
    weight_decay: float = 0.0         # L2 weight decay
    lr_decay: float = 0.95            # learning rate *= lr_decay after every epoch
    patience: int = 0                 # > 0: stop once the validation error (own protocol)
                                      # has not improved for this many epochs; score the
                                      # best epoch's model (needs a validation split)
    warm_start_epochs: int = 0        # brief softmax pre-training (paper §4)
    warm_start_lr: float = 0.0        # its learning rate; 0 = train.lr (a fixed one lets
                                      # runs of other lrs share one stored warm start)
    warm_start_cache: str = ""        # folder to reuse identical warm starts from ("": off)
    variance_momentum: float = 0.9    # running average of s2 -> sigma^2 for kNC
    seed: int = 0                     # seeds weights, batches and augmentation
    device: str = "cpu"               # "cpu", "cuda", "cuda:1", or "auto"
    amp: bool = False                 # mixed precision (the loss stays float32)
    threads: int = 0                  # torch CPU threads; 0 = torch's default

    def warm_start_rate(self) -> float:
        """The warm start's learning rate: ``warm_start_lr``, or ``lr`` when that is 0."""
        return self.warm_start_lr or self.lr


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the test split after every ``every`` epochs and at the end."""

    neighbours: int = 128             # L nearest clusters for kNC (paper: 128)
    knn_k: int = 128                  # neighbours of the soft kNN (paper: 128)
    every: int = 1                    # evaluate every N epochs (0: only at the end)
    test_time_augment: int = 0        # average the embeddings of N augmented copies (paper: 16)
    plots: bool = True                # loss curve and t-SNE pictures into the run folder


@dataclass(frozen=True)
class Config:
    """The whole run. ``out`` is the run folder (default: runs/<dataset>-<loss>-<time>)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str | None = None

    def validate(self) -> Config:
        """Check every field; raise ``ValueError`` naming the field, the rule and the value."""
        from ..data import DATASETS
        from ..losses import LOSSES
        from ..losses.magnet import check_scale
        from ..models import BACKBONES
        from ..sampling import BATCHES, IMPOSTORS

        check_choice("data.name", self.data.name, DATASETS.names())
        check_float("data.val_fraction", self.data.val_fraction, minimum=0.0, maximum=0.9)
        check_float("data.unseen_classes", self.data.unseen_classes, minimum=0.0, maximum=0.9)
        check_float("data.val_classes", self.data.val_classes, minimum=0.0, maximum=0.9)
        check_float("data.max_scale", self.data.max_scale, minimum=0.0, maximum=1.0)
        self.data.loader_options()
        check_choice("model.backbone", self.model.backbone, BACKBONES.names())
        check_int("model.embedding_dim", self.model.embedding_dim, minimum=2)
        self.model.backbone_options()
        check_choice("loss.name", self.loss.name, LOSSES.names())
        # alpha < 0 lets the hinge stay shut, so little or nothing trains, yet the errors of
        # the untrained model would be reported as results
        check_float("loss.alpha", self.loss.alpha, minimum=0.0,
                    fix="the gap of eq. 5 is a margin, 0 or more; the paper's optima 0.7-7.2")
        check_scale(self.loss.scale, "loss.scale")
        if self.loss.margin is not None:
            check_float("loss.margin", self.loss.margin, minimum=0.0)
        if self.loss.impostor_fraction is not None:
            check_float("loss.impostor_fraction", self.loss.impostor_fraction,
                        strict_minimum=0.0, maximum=1.0)
        if self.loss.triplet_variant is not None:
            check_choice("loss.triplet_variant", self.loss.triplet_variant, ("hinge", "ratio"))
        if self.loss.miner is not None:
            from ..losses.miners import MINERS
            check_choice("loss.miner", self.loss.miner, MINERS)
        check_int("index.clusters_per_class", self.index.clusters_per_class, minimum=1)
        check_choice("index.method", self.index.method, ("kmeans", "agglomerative"))
        check_float("index.distance_threshold", self.index.distance_threshold,
                    strict_minimum=0.0)
        check_int("index.refresh_every", self.index.refresh_every, minimum=0)
        check_float("index.drift_threshold", self.index.drift_threshold, minimum=0.0)
        check_int("index.refresh_lag", self.index.refresh_lag, minimum=0)
        check_int("sampler.clusters_per_batch", self.sampler.clusters_per_batch, minimum=2,
                  fix="a neighbourhood is a seed cluster plus at least one impostor")
        check_int("sampler.examples_per_cluster", self.sampler.examples_per_cluster, minimum=2,
                  fix="the variance needs two points per cluster")
        check_choice("sampler.impostors", self.sampler.impostors, IMPOSTORS)
        check_choice("sampler.batches", self.sampler.batches, BATCHES)
        _check_batches(self.loss.name, self.sampler.batches)
        check_int("sampler.batch_size", self.sampler.batch_size, minimum=0)
        check_int("sampler.classes_per_batch", self.sampler.classes_per_batch, minimum=2)
        check_int("sampler.examples_per_class", self.sampler.examples_per_class, minimum=2,
                  fix="a positive pair needs two examples of a class")
        check_int("train.epochs", self.train.epochs, minimum=1)
        check_int("train.iterations_per_epoch", self.train.iterations_per_epoch, minimum=0)
        check_choice("train.optimizer", self.train.optimizer, ("sgd", "adam"))
        check_float("train.lr", self.train.lr, strict_minimum=0.0)
        check_float("train.momentum", self.train.momentum, minimum=0.0, maximum=1.0)
        check_float("train.weight_decay", self.train.weight_decay, minimum=0.0)
        check_float("train.lr_decay", self.train.lr_decay, strict_minimum=0.0, maximum=1.0)
        check_int("train.warm_start_epochs", self.train.warm_start_epochs, minimum=0)
        check_int("train.patience", self.train.patience, minimum=0,
                  fix="epochs without a better validation error before stopping; 0: off")
        check_float("train.warm_start_lr", self.train.warm_start_lr, minimum=0.0,
                    fix="0 uses train.lr")
        check_float("train.variance_momentum", self.train.variance_momentum, minimum=0.0,
                    maximum=1.0)
        check_int("train.seed", self.train.seed, minimum=0)
        check_int("train.threads", self.train.threads, minimum=0)
        if not (self.train.device in ("cpu", "cuda", "auto")
                or self.train.device.startswith("cuda:")):
            raise ValueError("train.device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; "
                             f"got {self.train.device!r}")
        check_int("eval.neighbours", self.eval.neighbours, minimum=1)
        check_int("eval.knn_k", self.eval.knn_k, minimum=1)
        check_int("eval.every", self.eval.every, minimum=0)
        check_int("eval.test_time_augment", self.eval.test_time_augment, minimum=0)
        return self


def _check_batches(loss: str, batches: str) -> None:
    """Cluster losses train on neighbourhoods only; the other losses on anything but."""
    from ..losses import default_batches

    own = default_batches(loss)
    if batches in ("auto", own):
        return
    if own == "neighbourhood":
        raise ValueError(f"sampler.batches must be 'auto' or 'neighbourhood' for loss {loss!r} "
                         "(a cluster loss trains on neighbourhoods of M clusters x D examples "
                         f"from its index); got {batches!r}")
    if batches == "neighbourhood":
        raise ValueError(f"sampler.batches 'neighbourhood' needs a cluster loss (magnet, "
                         f"cluster_nca) and loss {loss!r} has no cluster index; use 'auto', "
                         "'class_balanced' or 'uniform'")


SECTIONS = tuple(f.name for f in fields(Config) if f.name != "out")
