"""Cost of fitting a cluster index of many small classes: the fine-grained regime.

The fine-grained experiment fits a fresh index of ~170 Omniglot characters with 13 training
drawings each (K = 4, 64-d) twice per pass (the validation and the test scores of every
loss without an index of its own), and 964 characters for the pretraining's. Each class's
k-means++ seeding runs under a one-thread BLAS limit; ``threadpool_limits`` found the
process's thread pools anew on every call (a scan of every loaded library, ~5 ms), which cost
more than the clustering itself. This times ``ClusterIndex.fit`` on such data with the seeding
limited the old way (``threadpool_limits`` per call, the baseline) and the current way (one
``ThreadpoolController`` found once), in this process, and checks both give the same index.

    python benchmarks/index_small_classes.py       # -> benchmarks/results/index_small_classes.json
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from unittest import mock

import numpy as np
from threadpoolctl import threadpool_limits

from magnetdml.clustering import ClusterIndex
from magnetdml.clustering import kmeans as km

RESULTS = Path(__file__).parent / "results" / "index_small_classes.json"
#: (classes, examples per class): the fine-grained targets and the pretraining set.
SHAPES = ((173, 13), (964, 13))
DIM, K, REPEATS = 64, 4, 3


class _PerCallLimits:
    """The baseline: a controller that rescans the libraries at every ``limit`` call."""

    def limit(self, *, limits: int, user_api: str):
        return threadpool_limits(limits, user_api=user_api)


def _fit_seconds(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    best, centres = float("inf"), None
    for _ in range(REPEATS):
        start = time.perf_counter()
        centres = ClusterIndex(clusters_per_class=K, seed=0).fit(x, y).centroids_
        best = min(best, time.perf_counter() - start)
    return best, centres


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for classes, per_class in SHAPES:
        y = np.repeat(np.arange(classes), per_class)
        x = (
            rng.standard_normal((classes, DIM))[y] + 0.5 * rng.standard_normal((y.size, DIM))
        ).astype(np.float32)
        with mock.patch.object(km, "_blas_controller", lambda: _PerCallLimits()):
            baseline, baseline_centres = _fit_seconds(x, y)
        current, current_centres = _fit_seconds(x, y)
        rows.append(
            {
                "classes": classes,
                "per_class": per_class,
                "dim": DIM,
                "k": K,
                "per_call_limits_seconds": round(baseline, 4),
                "cached_controller_seconds": round(current, 4),
                "speedup": round(baseline / current, 2),
                "same_index": bool(np.array_equal(baseline_centres, current_centres)),
            }
        )
        print(rows[-1])
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "index_small_classes",
                "repeats": REPEATS,
                "machine": platform.processor() or platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
