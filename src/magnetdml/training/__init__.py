"""Training (layer 5): the config tree, the loop, run folders and checkpoints.

The names below are imported on first use (PEP 562), so that the config tree
(``training.config``, ``training.config_io``) loads without torch: the command line builds its
parsers from it before it knows whether anything will be trained.
"""

_EXPORTS = {
    **dict.fromkeys(
        (
            "Config",
            "DataConfig",
            "EvalConfig",
            "IndexConfig",
            "LossConfig",
            "ModelConfig",
            "SamplerConfig",
            "TrainConfig",
        ),
        "config",
    ),
    **dict.fromkeys(
        ("apply_overrides", "config_from_dict", "config_to_dict", "load_config_file"), "config_io"
    ),
    **dict.fromkeys(("TrainResult", "train"), "loop"),
    "train_all": "parallel",
    "load_run": "runs",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'magnetdml.training' has no attribute {name!r}")


__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "IndexConfig",
    "LossConfig",
    "ModelConfig",
    "SamplerConfig",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config_file",
    "load_run",
    "train",
    "train_all",
]
