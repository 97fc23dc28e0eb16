"""benchmarks/cluster_counts.py: Magnet again at a benchmark's tuned config, only K varied."""

import json

import pytest
from benchmark_scripts import load_script, needs_script

from magnetdml.experiments.benchmark import run_benchmark

pytestmark = needs_script("cluster_counts.py")


@pytest.mark.slow
def test_variants_keep_the_tuned_config_and_change_only_the_index(tmp_path):
    bench = tmp_path / "bench"
    run_benchmark(
        "digits",
        ["magnet"],
        bench,
        trials=1,
        seeds=1,
        epochs=1,
        protocols=("seen",),
        overrides={"model.embedding_dim": 16, "train.threads": 1},
        log=lambda _m: None,
    )
    out = tmp_path / "clusters"
    assert (
        load_script("cluster_counts.py").main(
            [str(bench), "--out", str(out), "--ks", "1,2", "--seeds", "1"]
        )
        == 0
    )
    tuned = json.loads((bench / "seen-magnet-s0" / "config.json").read_text())
    for name, method, k in (("k1-s0", "kmeans", 1), ("k2-s0", "kmeans", 2)):
        config = json.loads((out / name / "config.json").read_text())
        assert config["index"]["method"] == method and config["index"]["clusters_per_class"] == k
        for section in ("loss", "data", "model"):
            assert config[section] == tuned[section]
        # M capped where K clusters per class of digits' 10 classes leave too few impostors
        m = tuned["sampler"]["clusters_per_batch"]
        assert config["sampler"]["clusters_per_batch"] == min(m, 1 + k * 9)
        assert config["sampler"]["examples_per_cluster"] == tuned["sampler"]["examples_per_cluster"]
        assert config["train"]["lr"] == tuned["train"]["lr"]
    agglomerative = json.loads((out / "agglomerative-s0" / "config.json").read_text())
    assert agglomerative["index"]["method"] == "agglomerative"
    results = json.loads((out / "results.json").read_text())
    rows = {row["index"]: row for row in results["tables"][0]["rows"]}
    assert set(rows) == {"k-means K=1", "k-means K=2", "agglomerative"}
    assert all(0 <= row["knc_error"] <= 1 for row in rows.values())
    assert results["benchmark"] == str(bench)


def test_a_folder_without_magnet_runs_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="run the benchmark with --losses magnet first"):
        load_script("cluster_counts.py").main([str(tmp_path), "--out", str(tmp_path / "c")])


def test_the_variants_read_the_benchmarks_data_folder(tmp_path):
    run = tmp_path / "seen-magnet-s0"
    run.mkdir()
    config = {
        "data": {"name": "omniglot", "data_dir": "../data/omniglot", "options": "{size: 28}"},
        "train": {"threads": 1, "warm_start_cache": "x", "lr": 0.01, "seed": 2},
        "index": {"method": "kmeans", "clusters_per_class": 3},
    }
    (run / "config.json").write_text(json.dumps(config))
    overrides = load_script("cluster_counts.py").tuned_overrides(tmp_path)
    assert overrides["data.data_dir"] == "../data/omniglot" and overrides["train.lr"] == 0.01
    assert "train.threads" not in overrides and "train.warm_start_cache" not in overrides
    assert "index.clusters_per_class" not in overrides and "train.seed" not in overrides
    moved = load_script("cluster_counts.py").tuned_overrides(tmp_path, "/elsewhere/omniglot")
    assert moved["data.data_dir"] == "/elsewhere/omniglot"
