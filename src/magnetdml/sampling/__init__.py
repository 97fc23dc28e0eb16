"""Batch samplers (layer 2): ``torch.utils.data.Sampler``s of dataset-index lists.

* :mod:`~magnetdml.sampling.neighbourhood`: the neighbourhood sampler Magnet Loss trains on;
* :mod:`~magnetdml.sampling.balanced`: the class-balanced sampler of the baselines;
* :mod:`~magnetdml.sampling.batch_stream`: the resumable, rank-sharded stream both build on.

``magnetdml.sampling.NeighbourhoodSampler`` (and ``IMPOSTORS``, ``as_numpy``) stay importable
from here, where they lived when ``sampling`` was one module.
"""

from .balanced import ClassBalancedSampler
from .batch_stream import BatchStream, check_replicas, draw_uniform
from .neighbourhood import IMPOSTORS, NeighbourhoodSampler, as_numpy

__all__ = ["IMPOSTORS", "BatchStream", "ClassBalancedSampler", "NeighbourhoodSampler",
           "as_numpy", "check_replicas", "draw_uniform"]
