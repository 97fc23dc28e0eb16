"""The frozen config tree that drives the Python API, the CLI and every run's ``config.json``.

Each leaf field is settable on the command line as ``--section.field VALUE`` (for example
``--loss.alpha 1.0``) or from a YAML/JSON file with the same nesting. Each field carries its
rule beside it (``rule(default, minimum=..., choices=...)``, see :mod:`magnetdml._validation`)
and its documentation in the comment on its line, which ``--help`` shows. ``Config.validate``
checks every rule once, then the rules that relate fields, and raises a ``ValueError`` naming
the field, the rule and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .._validation import check_rules, rule
from .config_checks import check_relations
from .sigma2 import SIGMA2_MOMENTUM

# The fixes that rules name (the text after the rule in an error message).
SCALE_FIX = "the inverse temperature multiplies the distances; 1 is paper eq. 5"
# alpha < 0 lets the hinge stay shut, so little or nothing trains, yet the errors of the
# untrained model would be reported as results
ALPHA_FIX = "the gap of eq. 5 is a margin, 0 or more; the paper's optima 0.7-7.2"
M_FIX = "a neighbourhood is a seed cluster plus at least one impostor"
D_FIX = "the variance needs two points per cluster"
K_FIX = "a positive pair needs two examples of a class"
PATIENCE_FIX = "epochs without a better validation error before stopping; 0: off"


def _datasets():
    from ..data import DATASETS

    return DATASETS.names()


def _backbones():
    from ..models import BACKBONES

    return BACKBONES.names()


def _miners():
    from ..losses.miners import MINERS

    return list(MINERS)


def _batches():
    from ..sampling import BATCHES

    return list(BATCHES)


def _impostors():
    from ..sampling import IMPOSTORS

    return list(IMPOSTORS)


def _precisions():
    from ..models.inference import PRECISIONS

    return list(PRECISIONS)


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

    name: str = rule("digits", choices=_datasets)  # a name of magnetdml.data.DATASETS
    data_dir: str | None = None  # folder with the dataset's files (not needed for digits)
    seed: int = rule(0, minimum=0)  # seeds the train/test/val and class splits
    val_fraction: float = rule(0.0, minimum=0.0, maximum=0.9)  # fraction of train held out
    # for hyperparameter search
    unseen_classes: float = rule(0.0, minimum=0.0, maximum=0.9)  # fraction of classes held
    # out entirely (class-disjoint)
    val_classes: float = rule(0.0, minimum=0.0, maximum=0.9)  # fraction of the other classes
    # held out as a class-disjoint validation split
    split_by: str = ""  # a class attribute (e.g. alphabet, parent): unseen_classes and
    # val_classes then hold out that fraction of its groups, each group whole
    val_folds: int = rule(0, minimum=0)  # k-fold cross-validation over the seen classes
    # (or groups): K folds, fold val_fold validates (0: none; exclusive with val_classes)
    val_fold: int = rule(0, minimum=0)  # which fold validates, 0..val_folds-1
    collapse_pairs: bool = False  # train on random pairs of classes merged (paper §4.3)
    options: str = ""  # loader options as YAML, e.g. "{unseen_alphabets: 0.2}"
    augment: bool = False  # paper §4: random rescale up to max_scale, crop back
    max_scale: float = rule(0.3, minimum=0.0, maximum=1.0)  # augmentation: rescale by up to
    # 1 + max_scale

    def class_disjoint_val(self) -> bool:
        """Whether the validation split holds whole classes (``val_classes`` or
        ``val_folds``): it is then scored by retrieval among its own examples."""
        return bool(self.val_classes or self.val_folds)

    def loader_options(self) -> dict:
        """``options`` parsed: extra keyword arguments of this dataset's loader."""
        return parse_options("data.options", self.options, "{unseen_alphabets: 0.2, size: 28}")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone + linear embedding head (paper: embedding dimension 1024)."""

    backbone: str = rule("mlp", choices=_backbones)  # a name of magnetdml.models.BACKBONES
    embedding_dim: int = rule(64, minimum=2)  # size of the embedding (paper: 1024)
    normalize: bool = False  # L2-normalise the embedding (on whenever the loss
    # normalises inside: triplet by default)
    options: str = ""  # backbone options as YAML, e.g. "{hidden_sizes: [512]}"
    init_from: str = ""  # a run folder (or checkpoint.pt) whose final backbone
    # and head weights this run starts from (pretraining)

    def backbone_options(self) -> dict:
        """``options`` parsed: extra keyword arguments of this backbone's factory."""
        return parse_options("model.options", self.options, "{channels: [32, 64, 128]}")


@dataclass(frozen=True)
class LossConfig:
    """The loss and its hyperparameters. Each loss reads only the fields its spec names
    (``magnetdml.losses.LOSSES``); ``None`` (and every default here) means "unset", which is
    that loss's own default (triplet margin 0.2, contrastive and lifted 1.0, ...). A field set
    on a loss that does not read it is an error, never ignored. (The defaults are
    ``magnetdml.losses.UNSET``, kept out of this module so that ``--help`` needs no torch.)"""

    name: str = "magnet"  # a loss of magnetdml.losses.LOSSES, or
    # pml:CLASSNAME (pytorch-metric-learning)
    alpha: float = rule(1.0, minimum=0.0, fix=ALPHA_FIX)  # Magnet's margin, in units of
    # the variance
    scale: float = rule(1.0, strict_minimum=0.0, fix=SCALE_FIX)  # Magnet / cluster-NCA
    # inverse temperature s on the variance-normalised
    # distances ("global scaling", App. B; 1 = eq. 5);
    # kNC's lengthscale is sigma^2 / s
    # (evaluation.knc_lengthscale)
    margin: float | None = rule(None, minimum=0.0)  # triplet / contrastive / lifted margin
    positive_margin: float | None = None  # contrastive: positives pulled below this
    triplet_variant: str | None = rule(None, choices=("hinge", "ratio"))  # "hinge" (paper
    # eq. 1) or "ratio" (seed 003)
    miner: str | None = rule(None, choices=_miners)  # triplet's miner
    impostor_fraction: float | None = rule(None, strict_minimum=0.0, maximum=1.0)  # triplet:
    # nearest impostor fraction (App. B)
    normalize: bool | None = None  # L2-normalise inside triplet-style losses
    options: str = ""  # pml: losses' keyword arguments as YAML, e.g.
    # "{margin: 0.1, alpha: 32}"; key miner: a PML
    # miner name, {name: ..., KEY: VALUE} or none
    parameter_lr: float | None = rule(None, strict_minimum=0.0)  # lr of the loss's own
    # parameters (classifier, proxies) as a multiple
    # of train.lr; None: the loss's paper default
    # (ProxyAnchor 100, else 1)

    def spec(self):
        """The :class:`~magnetdml.losses.LossSpec` of ``name``."""
        from ..losses import loss_spec

        return loss_spec(self.name)

    def fields(self) -> dict:
        """Every field but ``name``: what ``build_loss`` takes."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}

    def parameter_lr_multiplier(self) -> float:
        """``parameter_lr``, or the loss's declared default."""
        return self.parameter_lr if self.parameter_lr is not None else self.spec().parameter_lr


@dataclass(frozen=True)
class IndexConfig:
    """The cluster index of paper §3.2 (k-means per class, refreshed during training)."""

    clusters_per_class: int = rule(4, minimum=1)  # K (fewer for classes with fewer examples)
    method: str = rule("kmeans", choices=("kmeans", "agglomerative"))  # agglomerative: seed 000
    distance_threshold: float = rule(1.0, strict_minimum=0.0)  # agglomerative cut, relative
    # to the intra-class spread
    refresh_every: int = rule(0, minimum=0)  # iterations between refreshes; 0 = every epoch
    drift_threshold: float = rule(0.0, minimum=0.0)  # > 0: refresh when a probe set drifts
    # more (adaptive)
    refresh_lag: int = rule(0, minimum=0)  # > 0: embed a weight snapshot on another thread
    # and swap the index in this many iterations later
    refresh_precision: str = rule("float32", choices=_precisions)  # bfloat16: the refreshes
    # during training embed in bfloat16 (~1.9x faster on CPUs with
    # bfloat16 kernels; the final index and evaluation stay float32)


@dataclass(frozen=True)
class SamplerConfig:
    """Batch composition: M clusters x D examples (cluster losses), P classes x K examples
    (triplet, contrastive, lifted), or uniformly shuffled batches (softmax)."""

    batches: str = rule("auto", choices=_batches)  # auto (the loss's own: neighbourhood for
    # cluster losses, uniform for softmax and proxy losses,
    # class_balanced for the others), class_balanced or
    # uniform
    clusters_per_batch: int = rule(12, minimum=2, fix=M_FIX)  # M (paper's best: 12)
    examples_per_cluster: int = rule(4, minimum=2, fix=D_FIX)  # D (paper's best: 4)
    impostors: str = rule("nearest", choices=_impostors)  # "nearest" (paper) or "random"
    # (ablation)
    classes_per_batch: int = rule(8, minimum=2)  # P, for losses without a cluster index
    # (P*K = 48 = M*D, the same images per step)
    examples_per_class: int = rule(6, minimum=2, fix=K_FIX)  # K (P <= 10 fits CIFAR/MNIST)
    batch_size: int = rule(0, minimum=0)  # uniform batches; 0 = P * K, the baselines' size

    def batch_protocol(self, loss: str) -> str:
        """``batches`` with ``auto`` resolved for ``loss`` (a name of LOSSES): its spec's."""
        from ..losses import loss_spec

        return loss_spec(loss).batches if self.batches == "auto" else self.batches


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper App. B: SGD, momentum 0.9, per-epoch annealing)."""

    epochs: int = rule(30, minimum=1)  # epochs to train (one pass, or iterations_per_epoch)
    iterations_per_epoch: int = rule(0, minimum=0)  # 0 = training examples // batch size
    optimizer: str = rule("sgd", choices=("sgd", "adam"))  # "sgd" or "adam"
    lr: float = rule(0.05, strict_minimum=0.0)  # learning rate
    momentum: float = rule(0.9, minimum=0.0, maximum=1.0)  # SGD momentum (paper: 0.9)
    weight_decay: float = rule(0.0, minimum=0.0)  # L2 weight decay
    lr_decay: float = rule(0.95, strict_minimum=0.0, maximum=1.0)  # learning rate *= lr_decay
    # after every epoch
    patience: int = rule(0, minimum=0, fix=PATIENCE_FIX)  # > 0: stop once the validation
    # error (own protocol) has not improved for this many
    # epochs; score the best epoch's model (needs a
    # validation split)
    warm_start_epochs: int = rule(0, minimum=0)  # brief softmax pre-training (paper §4)
    warm_start_lr: float = rule(0.0, minimum=0.0, fix="0 uses train.lr")  # its learning
    # rate; 0 = train.lr (a fixed one lets runs of other
    # lrs share one stored warm start)
    warm_start_cache: str = ""  # folder to reuse identical warm starts from ("": off)
    variance_momentum: float = rule(SIGMA2_MOMENTUM, minimum=0.0, maximum=1.0)  # running average of
    # s2 -> sigma^2 for kNC
    seed: int = rule(0, minimum=0)  # seeds weights, batches and augmentation
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    amp: bool = False  # mixed precision (the loss stays float32)
    threads: int = rule(0, minimum=0)  # torch CPU threads; 0 = cores - 1 (machine.py)
    log: str = rule("csv", choices=("csv", "tensorboard", "none"))  # also log to: csv
    # (RUN/metrics.csv), tensorboard (RUN/tensorboard/, needs
    # the tensorboard extra), none

    def warm_start_rate(self) -> float:
        """The warm start's learning rate: ``warm_start_lr``, or ``lr`` when that is 0."""
        return self.warm_start_lr or self.lr


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the test split after every ``every`` epochs and at the end."""

    neighbours: int = rule(128, minimum=1)  # L nearest clusters for kNC (paper: 128)
    knn_k: int = rule(128, minimum=1)  # neighbours of the soft kNN (paper: 128)
    every: int = rule(1, minimum=0)  # evaluate every N epochs (0: only at the end)
    test_time_augment: int = rule(0, minimum=0)  # average the embeddings of N augmented
    # copies (paper: 16)
    plots: bool = True  # loss curve and t-SNE pictures into the run folder
    final: bool = True  # score the test (and unseen) splits at the end; off
    # for search trials, which the tuner scores on val


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
        """Check every field's rule, then the rules that relate fields; raise ``ValueError``
        naming the field, the rule and the value."""
        for section in SECTIONS:
            check_rules(getattr(self, section), prefix=f"{section}.")
        check_relations(self)
        return self


SECTIONS = tuple(f.name for f in fields(Config) if f.name != "out")
