"""Training (layer 5): the config tree, the loop, run folders and checkpoints."""

from .config import (
                     Config,
                     DataConfig,
                     EvalConfig,
                     IndexConfig,
                     LossConfig,
                     ModelConfig,
                     SamplerConfig,
                     TrainConfig,
)
from .config_io import apply_overrides, config_from_dict, config_to_dict, load_config_file
from .loop import TrainResult, train
from .parallel import train_all

__all__ = ["Config", "DataConfig", "EvalConfig", "IndexConfig", "LossConfig", "ModelConfig",
           "SamplerConfig", "TrainConfig", "TrainResult", "apply_overrides", "config_from_dict",
           "config_to_dict", "load_config_file", "train", "train_all"]
