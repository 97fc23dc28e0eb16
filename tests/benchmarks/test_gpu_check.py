"""benchmarks/gpu_check.sh: every part that runs without a GPU (``--device cpu --tiny``)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from benchmark_scripts import BENCHMARKS, load_script, needs_script

from magnetdml.evaluation import nearest_neighbours

pytestmark = needs_script("gpu_check.py")


def test_device_search_matches_the_library_search():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(70, 16)).astype(np.float32)
    distances, indices = load_script("gpu_check.py").exact_search_torch(
        queries, reference, 9, "cpu", rows=32
    )
    want_d, want_i = nearest_neighbours(queries, 9, reference)
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_allclose(distances, want_d, rtol=1e-4, atol=1e-4)


def test_a_run_matches_within_twice_the_seed_noise_or_one_and_a_half_points():
    def run(device, amp, seed, knn):
        return {
            "name": f"{device}-{amp}-{seed}",
            "loss": "magnet",
            "device": device,
            "amp": amp,
            "seed": seed,
            "knn_error": knn,
        }

    runs = [
        run("cuda", False, 0, 0.300),
        run("cuda", False, 1, 0.320),
        run("cuda", True, 0, 0.345),
        run("cpu", False, 0, 0.350),
    ]
    load_script("gpu_check.py").verdicts(runs)
    assert [r["seed_noise"] for r in runs[:3]] == pytest.approx([0.02, 0.02, 0.02])
    assert runs[0]["matches"] is False and runs[0]["reference"] == "cpu-False-0"  # 0.05 > 0.04
    assert runs[1]["matches"] is True  # 0.03 <= 0.04
    assert runs[2]["matches"] is False and runs[2]["reference"] == "cuda-False-0"
    assert runs[3]["matches"] is None  # the reference


@pytest.mark.slow
def test_the_script_runs_on_a_cpu_and_prints_its_table(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [
            "bash",
            str(BENCHMARKS / "gpu_check.sh"),
            "--device",
            "cpu",
            "--tiny",
            "--losses",
            "magnet",
            "--epochs",
            "1",
            "--iterations",
            "3",
            "--references",
            "3000",
            "--queries",
            "40",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| magnet-cpu-amp-seed0 |" in done.stdout
    assert "evaluation, 3,000 references x 128-d, 40 queries" in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in results["runs"]] == [
        "magnet-cpu-fp32-seed0",
        "magnet-cpu-fp32-seed1",
        "magnet-cpu-amp-seed0",
    ]
    assert results["evaluation"]["max_abs_difference"] < 1e-6
    assert all(r["images_per_second"] > 0 for r in results["runs"])
