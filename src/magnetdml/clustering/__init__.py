"""Clustering (layer 2): k-means (k-means++ seeded), agglomerative clustering and the cluster
index built from them (estimator-shaped: parameters in ``__init__``, fitted state in
attributes ending in ``_``).

The submodules are :mod:`~magnetdml.clustering.kmeans`, :mod:`~magnetdml.clustering.agglomerative`
and :mod:`~magnetdml.clustering.index`; only the index is re-exported here (re-exporting the
function ``kmeans`` would hide the submodule of the same name).
"""

from .index import METHODS, ClusterIndex

__all__ = ["METHODS", "ClusterIndex"]
