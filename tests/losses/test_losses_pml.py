"""pytorch-metric-learning's losses as ``pml:CLASSNAME``: specs read off the class, the same
loss values as PML called directly, one-line errors, and real training with resume."""

from __future__ import annotations

import json

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from magnetdml.losses import PMLLoss, build_loss, loss_spec
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config
from magnetdml.training.distributed import Distributed
from magnetdml.training.runs import evaluate_run, load_run
from magnetdml.training.trainer import Trainer

#: The losses the benchmark covers, with what their spec must say.
EXPECTED = {
    "pml:ProxyAnchorLoss": ("uniform", "classifier", True, 100.0),
    "pml:ProxyNCALoss": ("uniform", "classifier", True, 1.0),
    "pml:NormalizedSoftmaxLoss": ("uniform", "classifier", True, 1.0),
    "pml:ArcFaceLoss": ("uniform", "classifier", True, 1.0),
    "pml:SoftTripleLoss": ("uniform", "classifier", True, 100.0),
    "pml:MultiSimilarityLoss": ("class_balanced", None, False, 1.0),
    "pml:SupConLoss": ("class_balanced", None, False, 1.0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_spec_is_read_off_the_class(name):
    spec = loss_spec(name)
    assert (spec.batches, spec.own_scores, spec.has_parameters, spec.parameter_lr) == EXPECTED[name]
    assert not spec.uses_index and spec.own_metric == "knn_error"


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(24, 8, generator=g), torch.arange(4).repeat_interleave(6)


def test_the_loss_equals_pml_called_directly_with_its_miner():
    x, y = _batch()
    ours = build_loss("pml:MultiSimilarityLoss", embedding_dim=8, num_classes=4)
    assert isinstance(ours.miner, pml_miners.MultiSimilarityMiner) and ours.miner.epsilon == 0.1
    theirs = pml_losses.MultiSimilarityLoss()
    pairs = pml_miners.MultiSimilarityMiner(epsilon=0.1)(x, y)
    assert torch.allclose(ours(x, y), theirs(x, y, pairs))
    unmined = build_loss(
        "pml:MultiSimilarityLoss", embedding_dim=8, num_classes=4, options="{miner: none, alpha: 3}"
    )
    assert unmined.miner is None and unmined.loss.alpha == 3
    assert torch.allclose(unmined(x, y), pml_losses.MultiSimilarityLoss(alpha=3)(x, y))


def test_proxy_losses_are_built_with_the_runs_sizes_and_score_classes():
    x, y = _batch()
    torch.manual_seed(0)
    ours = build_loss(
        "pml:ProxyAnchorLoss", embedding_dim=8, num_classes=4, options={"margin": 0.2, "alpha": 16}
    )
    torch.manual_seed(0)
    theirs = pml_losses.ProxyAnchorLoss(num_classes=4, embedding_size=8, margin=0.2, alpha=16)
    assert ours.loss.proxies.shape == (4, 8)
    assert torch.allclose(ours(x, y), theirs(x, y))
    # class scores: the most similar proxy wins (cosine similarity, larger is closer)
    with torch.no_grad():
        ours.loss.proxies.copy_(torch.eye(4, 8))
    assert ours.class_scores(torch.eye(4, 8) * 3).argmax(1).tolist() == [0, 1, 2, 3]
    # ProxyNCA's distance is squared L2 (smaller is closer): its scores are negated
    nca = build_loss("pml:ProxyNCALoss", embedding_dim=8, num_classes=4)
    with torch.no_grad():
        nca.loss.proxies.copy_(torch.eye(4, 8))
    assert nca.class_scores(torch.eye(4, 8)).argmax(1).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "options,match",
    [
        ("{alpah: 32}", r"pml:ProxyAnchorLoss has no keyword 'alpah'; did you mean 'alpha'\?"),
        ("{alpha: many}", r"keyword 'alpha' must be a number \(default 32\); got 'many'"),
        ("{num_classes: 3}", r"no keyword 'num_classes' \(the run sets it\)"),
        ("{miner: TripletMarginMiner, margin: 0.1}", None),
        ("[1, 2]", r"loss.options must be a YAML mapping"),
    ],
)
def test_options_are_checked_not_ignored(options, match):
    if match is None:  # a miner is accepted for any pair-based use, here a proxy loss's
        assert (
            build_loss("pml:ProxyAnchorLoss", embedding_dim=8, num_classes=3, options=options).miner
            is not None
        )
        return
    with pytest.raises(ValueError, match=match):
        build_loss("pml:ProxyAnchorLoss", embedding_dim=8, num_classes=3, options=options)


def test_unknown_classes_and_miners_get_a_did_you_mean():
    with pytest.raises(
        ValueError, match="no loss 'ProxyAnchorLos'; did you mean 'ProxyAnchorLoss'"
    ):
        loss_spec("pml:ProxyAnchorLos")
    with pytest.raises(
        ValueError, match="no miner 'MultiSimilarityMinor'; did you mean 'MultiSimilarityMiner'"
    ):
        build_loss(
            "pml:MultiSimilarityLoss",
            embedding_dim=8,
            num_classes=3,
            options="{miner: MultiSimilarityMinor}",
        )
    with pytest.raises(ValueError, match=r"loss.options does not apply to loss 'magnet'"):
        build_loss("magnet", embedding_dim=8, num_classes=3, options="{margin: 0.1}")
    with pytest.raises(
        ValueError,
        match=r"loss.parameter_lr applies to losses with "
        r"parameters .* 'pml:MultiSimilarityLoss' has none",
    ):
        apply_overrides(
            Config(), {"loss.name": "pml:MultiSimilarityLoss", "loss.parameter_lr": 10.0}
        ).validate()


SHORT = {
    "train.threads": 1,
    "train.epochs": 2,
    "train.iterations_per_epoch": 5,
    "model.embedding_dim": 16,
    "eval.plots": False,
    "eval.every": 0,
    "loss.name": "pml:ProxyAnchorLoss",
    "train.lr": 0.01,
}


def _config(out, **overrides) -> Config:
    return apply_overrides(Config(), {**SHORT, "out": str(out), **overrides})


def test_proxies_train_at_their_own_lr_and_the_run_is_scored_by_them(tmp_path):
    config = _config(tmp_path / "run")
    trainer = Trainer(config.validate(), Distributed.setup("cpu"))
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(100 * groups[0]["lr"])
    assert groups[1]["params"][0] is trainer.loss_fn.loss.proxies
    trainer.close()  # frees the run folder for the real run
    result = train(config, progress=False)
    for key in ("classifier_error", "classifier_error_at_5", "knn_error", "map_at_r"):
        assert 0.0 <= result.summary[key] <= 1.0
    # the loaded run holds the trained proxies and reproduces the classifier's error
    run = load_run(tmp_path / "run")
    assert isinstance(run.loss_fn, PMLLoss)
    again = evaluate_run(run, split="test", write=False)["test"]
    assert again["classifier_error"] == pytest.approx(result.summary["classifier_error"])
    assert again["knn_error"] == pytest.approx(result.summary["knn_error"])


@pytest.mark.slow
def test_an_interrupted_proxy_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    straight = train(_config(tmp_path / "straight"), progress=False)
    original = Trainer.step

    def crash_in_second_epoch(self, batch):
        if self.iteration == SHORT["train.iterations_per_epoch"] + 1:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "step", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path / "resumed"), progress=False)
    monkeypatch.undo()
    resumed = train(_config(tmp_path / "resumed"), progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert torch.equal(a["loss"]["loss.proxies"], b["loss"]["loss.proxies"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])
    for key in ("classifier_error", "knn_error", "map_at_r"):
        assert resumed.summary[key] == straight.summary[key]
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
