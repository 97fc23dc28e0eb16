"""The config tree: flags, files, validation messages."""

import argparse
import json

import pytest

from magnetdml.training import Config, apply_overrides, config_from_dict, config_to_dict
from magnetdml.training.config_io import (
    add_config_arguments,
    config_from_arguments,
    load_config_file,
)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_arguments(parser.parse_args(argv))


def test_flags_set_typed_fields():
    config = parse(
        [
            "--loss.alpha",
            "2.5",
            "--train.epochs",
            "3",
            "--model.normalize",
            "true",
            "--data.data_dir",
            "/tmp/x",
        ]
    )
    assert config.loss.alpha == 2.5 and config.train.epochs == 3
    assert config.model.normalize is True and config.data.data_dir == "/tmp/x"


def test_file_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  alpha: 3.0\ntrain:\n  epochs: 7\n")
    config = parse(["--config", str(path), "--train.epochs", "2"])
    assert config.loss.alpha == 3.0 and config.train.epochs == 2


def test_dict_round_trip_through_json(tmp_path):
    config = apply_overrides(Config(), {"index.clusters_per_class": 8, "out": "runs/x"})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_to_dict(config)))
    assert load_config_file(path) == config
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(
    "argv,match",
    [
        (
            ["--sampler.examples_per_cluster", "1"],
            r"sampler.examples_per_cluster must be >= 2 \(the variance needs two points",
        ),
        (["--train.lr", "-1"], r"train.lr must be > 0.0; got -1.0"),
        (["--train.epochs", "many"], r"train.epochs must be of type int; got 'many'"),
        (["--loss.name", "magnett"], r"loss.name: unknown loss 'magnett'; did you mean 'magnet'"),
        (["--model.normalize", "maybe"], r"model.normalize must be of type bool"),
        (["--train.device", "gpu"], r"train.device must be 'cpu', 'cuda'"),
        (
            ["--loss.scale", "0"],
            r"loss.scale must be > 0.0 \(the inverse temperature multiplies "
            r"the distances; 1 is paper eq. 5\); got 0.0",
        ),
    ],
)
def test_bad_values_name_field_rule_and_value(argv, match):
    with pytest.raises(ValueError, match=match):
        parse(argv)


def test_unknown_fields_and_sections_list_the_valid_ones(tmp_path):
    with pytest.raises(
        ValueError, match="unknown config field 'loss.alfa'; fields of loss: name, alpha, scale"
    ):
        apply_overrides(Config(), {"loss.alfa": 1})
    path = tmp_path / "bad.json"
    path.write_text('{"optim": {"lr": 1}}')
    with pytest.raises(ValueError, match=r"unknown config section\(s\) \['optim'\]"):
        load_config_file(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_config_file(path)


def test_help_lists_every_field_with_its_default():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    text = parser.format_help()
    for flag in (
        "--loss.alpha",
        "--index.clusters_per_class",
        "--train.lr_decay",
        "--sampler.clusters_per_batch",
        "--eval.neighbours",
    ):
        assert flag in text
    assert "(default: 1.0)" in text and "(default: 128)" in text


def test_data_options_are_parsed_as_a_yaml_mapping():
    config = parse(["--data.options", "{unseen_alphabets: 0.2, size: 28}"])
    assert config.data.loader_options() == {"unseen_alphabets": 0.2, "size": 28}
    with pytest.raises(ValueError, match="data.options must be a YAML mapping"):
        parse(["--data.options", "[1, 2]"])
    config = parse(["--model.options", "{hidden_sizes: [32]}"])
    assert config.model.backbone_options() == {"hidden_sizes": [32]}
    with pytest.raises(ValueError, match="model.options must be a YAML mapping"):
        parse(["--model.options", "3"])


def test_help_shows_each_fields_description_valid_values_and_default_once(capsys):
    from magnetdml.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None) (default: None)" not in text and "(default: None)" in text
    assert "--train.patience INT > 0: stop once the validation error" in text
    assert (
        "--loss.name STR a loss of magnetdml.losses.LOSSES, or pml:CLASSNAME "
        "(pytorch-metric-learning); one of: cluster_nca,"
    ) in text
    assert "--sampler.impostors STR" in text and "one of: nearest, random" in text
    assert "(default: 'magnet')" in text and text.count("(default: 'magnet')") == 1
    # every config field is described
    from magnetdml.training.config import SECTIONS, Config
    from magnetdml.training.config_io import field_comments

    for section in SECTIONS:
        value = getattr(Config(), section)
        described = field_comments(type(value))
        missing = [f for f in value.__dataclass_fields__ if not described.get(f)]
        assert not missing, (section, missing)


def test_version_flag(capsys):
    import magnetdml
    from magnetdml.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"magnetdml {magnetdml.__version__}"
