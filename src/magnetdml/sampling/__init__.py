"""Batch samplers (layer 2): ``torch.utils.data.Sampler``s of dataset-index lists.

* :mod:`~magnetdml.sampling.neighbourhood`: the neighbourhood sampler Magnet Loss trains on;
* :mod:`~magnetdml.sampling.balanced`: the class-balanced sampler of the pair and triplet
  baselines;
* :mod:`~magnetdml.sampling.uniform`: uniformly shuffled batches, softmax's standard protocol;
* :mod:`~magnetdml.sampling.batch_stream`: the resumable, rank-sharded stream they build on.

``magnetdml.sampling.NeighbourhoodSampler`` (and ``IMPOSTORS``, ``as_numpy``) stay importable
from here, where they lived when ``sampling`` was one module.
"""

from .balanced import ClassBalancedSampler
from .batch_stream import BatchStream, check_replicas, draw_uniform
from .neighbourhood import IMPOSTORS, NeighbourhoodSampler, as_numpy
from .uniform import UniformSampler

#: ``sampler.batches``: how a step's batch is drawn ("auto": the loss's own protocol)
BATCHES = ("auto", "neighbourhood", "class_balanced", "uniform")

__all__ = [
    "BATCHES",
    "IMPOSTORS",
    "BatchStream",
    "ClassBalancedSampler",
    "NeighbourhoodSampler",
    "UniformSampler",
    "as_numpy",
    "check_replicas",
    "draw_uniform",
]
