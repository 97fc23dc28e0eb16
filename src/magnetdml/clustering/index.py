"""The cluster index: per-class clusters of the training embeddings (paper §3.2).

For each class ``c``, k-means++ seeded k-means over the embeddings of *all* that class's
training examples gives ``K_c = min(K, N_c)`` clusters; the sampler draws neighbourhoods from
them and kNC evaluation (§3.3) votes with their centres. ``refresh`` re-fits on new embeddings
(computed in one pass, network in eval mode) and warm-starts each class from its previous
centres when its cluster count is unchanged, so cluster ids stay stable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._progress import bar
from .._validation import (
    as_embedding_matrix,
    as_label_vector,
    check_choice,
    check_float,
    check_int,
)
from . import agglomerative
from .impostors import rank_impostors
from .kmeans import kmeans

METHODS = ("kmeans", "agglomerative")
# Impostors cached per cluster: enough for the paper's M - 1 = 11 and then some.
_IMPOSTOR_CACHE = 32
_FITTED = (
    "centroids_",
    "centroid_labels_",
    "assignments_",
    "classes_",
    "clusters_per_class_",
    "n_refreshes_",
)


class ClusterIndex:
    """Per-class clusters of an embedding (estimator-shaped: fitted state ends in ``_``).

    Parameters
    ----------
    clusters_per_class : K, clusters per class for ``method="kmeans"`` (paper: 1 to 16).
    method : "kmeans" (the paper) or "agglomerative" (Ward tree cut at ``distance_threshold``,
        in units of the pooled intra-class spread times sqrt(class size): see
        ``magnetdml.clustering.agglomerative``; the count varies by class and over training).
    distance_threshold : the Ward cut for ``method="agglomerative"``; ignored by k-means.
    max_clusters_per_class : a cap on clusters per class for either method (None: no cap).
    max_iter : Lloyd iterations per k-means.
    seed : seeds k-means++ and the agglomerative subsample (mixed with class and refresh count).
    device : torch device for the Lloyd steps ("cpu", "cuda", "cuda:1").

    Fitted attributes: ``centroids_ (C, D)`` float32 (grouped by class, in ``classes_`` order),
    ``centroid_labels_ (C,)`` int64, ``assignments_ (N,)`` int64 row of ``centroids_`` per
    training example, ``classes_ (n_classes,)``, ``clusters_per_class_ (n_classes,)``,
    ``cluster_sizes_ (C,)`` (every cluster is non-empty), ``n_clusters_`` = C, ``n_refreshes_``.
    """

    def __init__(
        self,
        clusters_per_class: int = 8,
        method: str = "kmeans",
        distance_threshold: float = 1.0,
        max_clusters_per_class: int | None = None,
        max_iter: int = 20,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.clusters_per_class = clusters_per_class
        self.method = method
        self.distance_threshold = distance_threshold
        self.max_clusters_per_class = max_clusters_per_class
        self.max_iter = max_iter
        self.seed = seed
        self.device = device

    # ----------------------------------------------------------------------------- fitting
    def fit(self, embeddings: Any, labels: Any) -> ClusterIndex:
        """Cluster ``embeddings (N, D)`` of each class of ``labels (N,)`` from scratch."""
        self._fit(embeddings, labels, warm=False)
        return self

    def refresh(self, embeddings: Any, labels: Any) -> ClusterIndex:
        """Re-fit on new embeddings; a class whose cluster count is unchanged starts its Lloyd
        iterations from its previous centres (faster, and its cluster ids stay put)."""
        self._fit(embeddings, labels, warm=hasattr(self, "centroids_"))
        return self

    def _check_params(self, *, device_available: bool = True) -> None:
        check_int("clusters_per_class", self.clusters_per_class, minimum=1)
        check_choice("method", self.method, METHODS)
        check_float(
            "distance_threshold",
            self.distance_threshold,
            strict_minimum=0.0,
            fix="a Ward cut in units of the intra-class spread, e.g. 1.0",
        )
        if self.max_clusters_per_class is not None:
            check_int(
                "max_clusters_per_class",
                self.max_clusters_per_class,
                minimum=1,
                fix="or None for no cap",
            )
        check_int("max_iter", self.max_iter, minimum=0)
        check_int("seed", self.seed)
        if not isinstance(self.device, str):
            raise TypeError(
                f"device must be a torch device string such as 'cpu' or 'cuda'; got {self.device!r}"
            )
        try:
            device = torch.device(self.device)
        except RuntimeError as error:
            raise ValueError(
                f"device must be a torch device string such as 'cpu' or 'cuda'; got {self.device!r}"
            ) from error
        if device_available and device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but torch sees no CUDA GPU; use device='cpu'")

    def _fit(self, embeddings: Any, labels: Any, *, warm: bool) -> None:
        self._check_params()
        points = as_embedding_matrix("embeddings", embeddings)  # (N, D)
        labels = as_label_vector("labels", labels, length=points.shape[0])  # (N,)
        if points.shape[0] == 0:
            raise ValueError("embeddings must hold at least one example; got 0 rows")
        if warm and points.shape[1] != self.centroids_.shape[1]:
            raise ValueError(
                f"embeddings must keep the dimension of the fitted index "
                f"({self.centroids_.shape[1]}) for a refresh; got "
                f"{points.shape[1]} (call fit to start over)"
            )
        previous = self._previous_centres() if warm else {}
        refreshes = self.n_refreshes_ + 1 if warm else 0
        classes, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")  # examples grouped by class
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse))])
        cap = self.max_clusters_per_class or np.iinfo(np.int64).max
        spread = (
            agglomerative.pooled_spread(points, labels) if self.method == "agglomerative" else 0.0
        )
        centres, assignments, counts = [], np.empty(points.shape[0], np.int64), []
        offset = 0
        shown = bar(classes, desc="clustering each class", unit="class")  # after DELAY s
        for i, label in enumerate(shown):  # one clustering per class, not per example
            rows = order[bounds[i] : bounds[i + 1]]
            # A per-class, per-refresh seed; 31 bits because faiss takes a C int.
            seed = int(
                np.random.SeedSequence([self.seed, refreshes, i]).generate_state(1)[0] & 0x7FFFFFFF
            )
            if self.method == "kmeans":
                k = int(min(self.clusters_per_class, cap, rows.size))
                init = previous.get(int(label))
                init = init if init is not None and init.shape[0] == k else None
                result = kmeans(
                    points[rows],
                    k,
                    seed=seed,
                    max_iter=self.max_iter,
                    init=init,
                    device=self.device,
                )
                c, a = _drop_empty(result.centroids, result.assignments)
            else:
                c, a = agglomerative.ward_clusters(
                    points[rows],
                    distance_threshold=self.distance_threshold,
                    spread=spread,
                    max_clusters=self.max_clusters_per_class,
                    rng=np.random.default_rng(seed),
                )
            centres.append(c)
            assignments[rows] = a + offset
            counts.append(c.shape[0])
            offset += c.shape[0]
        self.centroids_ = np.ascontiguousarray(np.concatenate(centres), dtype=np.float32)
        self.classes_ = classes
        self.clusters_per_class_ = np.asarray(counts, dtype=np.int64)
        self.centroid_labels_ = np.repeat(classes, self.clusters_per_class_).astype(np.int64)
        self.assignments_ = assignments
        self.n_refreshes_ = refreshes
        self._build_lookups()

    def _previous_centres(self) -> dict[int, np.ndarray]:
        starts = np.concatenate([[0], np.cumsum(self.clusters_per_class_)])
        return {
            int(c): self.centroids_[starts[i] : starts[i + 1]] for i, c in enumerate(self.classes_)
        }

    def _build_lookups(self) -> None:
        """CSR of members per cluster, sizes, and an empty impostor cache."""
        self.n_clusters_ = int(self.centroids_.shape[0])
        self.cluster_sizes_ = np.bincount(self.assignments_, minlength=self.n_clusters_)
        self._member_order = np.argsort(self.assignments_, kind="stable")  # (N,)
        self._member_offsets = np.concatenate([[0], np.cumsum(self.cluster_sizes_)])  # (C+1,)
        self._impostors: dict[int, np.ndarray] = {}
        self._sq_norms = np.einsum("ij,ij->i", self.centroids_, self.centroids_)  # (C,)

    # ----------------------------------------------------------------------------- queries
    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise ValueError(
                "this ClusterIndex is not fitted yet; call fit(embeddings, labels) first"
            )

    def _check_cluster(self, cluster_id: Any) -> int:
        self._check_fitted()
        cluster_id = check_int("cluster_id", cluster_id, minimum=0)
        if cluster_id >= self.n_clusters_:
            raise ValueError(
                f"cluster_id must be < n_clusters_ ({self.n_clusters_}); got {cluster_id}"
            )
        return cluster_id

    def members(self, cluster_id: int) -> np.ndarray:
        """Training-example indices ``(size,)`` of cluster ``cluster_id``, ascending."""
        cluster_id = self._check_cluster(cluster_id)
        lo, hi = self._member_offsets[cluster_id], self._member_offsets[cluster_id + 1]
        return self._member_order[lo:hi]

    def n_impostors(self, cluster_id: int) -> int:
        """How many clusters belong to classes other than ``cluster_id``'s."""
        cluster_id = self._check_cluster(cluster_id)
        label = self.centroid_labels_[cluster_id]
        own = self.clusters_per_class_[np.searchsorted(self.classes_, label)]
        return int(self.n_clusters_ - own)

    def nearest_impostors(self, cluster_id: int, m: int) -> np.ndarray:
        """The ``m`` clusters of other classes whose centres are nearest (squared Euclidean)
        to ``cluster_id``'s centre, nearest first: ``(m,)`` int64 (paper §3.2, step 2).

        Each cluster's nearest impostors are computed once (O(C D)) and cached until the next
        fit/refresh. Ties in distance go to the lower cluster id.
        """
        cluster_id = self._check_cluster(cluster_id)
        m = check_int("m", m, minimum=0)
        available = self.n_impostors(cluster_id)
        if m > available:
            raise ValueError(
                f"m must be <= the {available} clusters of classes other than "
                f"class {self.centroid_labels_[cluster_id]} (cluster {cluster_id})"
                f"; got {m} (ask for fewer, or add clusters/classes)"
            )
        ranking = self._impostors.get(cluster_id)
        if ranking is None or ranking.size < m:
            # Keep only the nearest few per cluster: a full ranking for every cluster would
            # cost C^2 memory.
            ranking = rank_impostors(
                self.centroids_,
                self._sq_norms,
                self.centroid_labels_,
                cluster_id,
                keep=max(m, _IMPOSTOR_CACHE),
            )
            self._impostors[cluster_id] = ranking
        return ranking[:m].copy()

    # ------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Parameters and fitted state as plain python / numpy values (for checkpoints)."""
        state: dict[str, Any] = {"params": self.get_params()}
        if hasattr(self, "centroids_"):
            state.update({name: np.array(getattr(self, name)) for name in _FITTED})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> ClusterIndex:
        """Restore what ``state_dict`` returned; derived lookups are rebuilt."""
        if not isinstance(state, dict) or "params" not in state:
            raise ValueError(
                "state must be a dict returned by ClusterIndex.state_dict(); "
                f"got {type(state).__name__} without 'params'"
            )
        for name, value in state["params"].items():
            setattr(self, name, value)
        # A GPU-fitted index must load on a CPU-only machine (for evaluation); the device is
        # only checked again by the next fit/refresh.
        self._check_params(device_available=False)
        missing = [name for name in _FITTED if name not in state]
        if len(missing) == len(_FITTED):
            return self
        if missing:
            raise ValueError(
                f"state lacks fitted entries {missing}; pass a complete ClusterIndex.state_dict()"
            )
        self.centroids_ = np.ascontiguousarray(state["centroids_"], dtype=np.float32)
        self.centroid_labels_ = np.asarray(state["centroid_labels_"], dtype=np.int64)
        self.assignments_ = np.asarray(state["assignments_"], dtype=np.int64)
        self.classes_ = np.asarray(state["classes_"])
        self.clusters_per_class_ = np.asarray(state["clusters_per_class_"], dtype=np.int64)
        self.n_refreshes_ = int(state["n_refreshes_"])
        self._build_lookups()
        return self

    def get_params(self) -> dict[str, Any]:
        return {
            "clusters_per_class": self.clusters_per_class,
            "method": self.method,
            "distance_threshold": self.distance_threshold,
            "max_clusters_per_class": self.max_clusters_per_class,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "device": self.device,
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"ClusterIndex({params})"


def _drop_empty(centroids: np.ndarray, assignments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove clusters with no member (k-means on duplicate points can leave some empty), so
    every cluster can be sampled; ids are renumbered densely."""
    sizes = np.bincount(assignments, minlength=centroids.shape[0])
    if sizes.all():
        return centroids, assignments
    keep = sizes > 0
    return centroids[keep], (np.cumsum(keep) - 1)[assignments]
