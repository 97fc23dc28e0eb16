"""Put a trained run to work on new data: embed, classify (kNC), retrieve and cluster.

:class:`RunInference` is a part of :class:`~magnetdml.training.runs.LoadedRun` (what
``magnetdml.load_run(path)`` returns). Its inputs are anything
:func:`~magnetdml.training.embed.as_batch_source` reads: a library dataset, a tensor or array of
model inputs ``(N, C, H, W)`` preprocessed as the training inputs were (see
:meth:`RunInference.preprocess` for raw ``uint8`` images), or a torch ``Dataset``.

Classification is the paper's kNC (§3.3): with the run's cluster index ``{mu_c}`` and the
lengthscale ``sigma^2 / s`` of its temperature ``s``, over the ``L`` nearest centres,

    P(class c | r) = sum_{mu in L nearest, class(mu) = c} exp(-s ||r - mu||^2 / (2 sigma^2))
                     / sum_{mu in L nearest} exp(-s ||r - mu||^2 / (2 sigma^2)),

and a run trained without an index (softmax, triplet, ...) gets one fitted now on its training
embeddings, exactly as its evaluation did (:func:`magnetdml.evaluation.fit_knc`, the one kNC
of training, reloaded runs and searches). The reference embeddings and the classifier are
computed once and kept.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from ..evaluation import KNearestClusters, fit_knc
from ..evaluation.clustering import cluster_assignments
from ..evaluation.neighbours import nearest_neighbours
from .setup import make_index


class RunInference:
    """Embedding, kNC classification, nearest training examples and clustering of new data."""

    _reference: np.ndarray | None = None
    _classifier: KNearestClusters | None = None

    def reference_embeddings(self) -> np.ndarray:
        """``(N_train, E)``: the training split's embeddings, without test-time augmentation
        (as training's references; computed once)."""
        if self._reference is None:
            self._reference = self.embed(self.splits.train, copies=0)
        return self._reference

    def classifier(self) -> KNearestClusters:
        """The run's fitted kNC classifier (``L = eval.neighbours`` nearest centres), as
        training scored it: its index (refreshed on the current embeddings if it clusters
        older ones) and ``sigma^2 / s``, or an index fitted now for losses without one."""
        if self._classifier is None:
            self._classifier = fit_knc(
                self.reference_embeddings(),
                self.splits.train.labels,
                index=self.index,
                sigma2=self.sigma2,
                scale=self.config.loss.scale,
                current=self.index_iteration == self.iteration,
                new_index=make_index(self.config),
                neighbours=self.config.eval.neighbours,
            )
        return self._classifier

    @property
    def class_names(self) -> list[str]:
        """Name of every class id (the dataset's names, or the ids as text)."""
        return list(self.splits.class_names)

    def predict_proba(self, data) -> np.ndarray:
        """``(N, C)`` kNC class probabilities (rows sum to 1); column ``j`` is class
        ``classifier().classes_[j]``."""
        return self.classifier().predict_scores(self.embed(data))

    def predict(self, data) -> np.ndarray:
        """``(N,)`` the kNC class id of each input (``class_names[id]`` is its name)."""
        return self.classifier().predict(self.embed(data))

    def top_k(self, data, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """``(classes (N, k), probabilities (N, k))``: the ``k`` most likely classes of each
        input, most likely first (``k`` above the number of classes: all of them)."""
        k = check_int("k", k, minimum=1, fix="the number of classes listed per input")
        scores = self.predict_proba(data)
        k = min(k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return self.classifier().classes_[order], np.take_along_axis(scores, order, axis=1)

    def kneighbors(self, data, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """``(distances (N, k), indices (N, k))``: the ``k`` nearest training examples of each
        input (Euclidean distance, nearest first; ``indices`` into ``splits.train``)."""
        sq, idx = nearest_neighbours(self.embed(data), k, self.reference_embeddings())
        return np.sqrt(np.maximum(sq, 0.0)), idx

    def cluster(self, data, n_clusters: int) -> np.ndarray:
        """``(N,)`` k-means++ cluster of each input's embedding: grouping examples of classes
        nobody labelled (seed 003's use); ``1 <= n_clusters <= N``."""
        n_clusters = check_int("n_clusters", n_clusters, minimum=1)
        embeddings = self.embed(data)
        if n_clusters > len(embeddings):
            raise ValueError(
                f"n_clusters must be <= {len(embeddings)} (the number of inputs); got {n_clusters}"
            )
        return cluster_assignments(embeddings, n_clusters, seed=self.config.train.seed)

    def preprocess(self, images, labels=None):
        """Raw images (``uint8`` ``(N, H, W)`` or ``(N, C, H, W)`` of the training data's size
        and channels, as its loader stores them) as a dataset preprocessed exactly like the
        training inputs (same scaling and normalisation): ready for every method here."""
        images = np.asarray(images)
        if images.ndim == len(self.splits.input_shape):  # one channel left out
            images = images[:, None]
        expected = tuple(self.splits.input_shape)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (N, {', '.join(map(str, expected))}) like the "
                f"run's training inputs; got {images.shape}: resize them first"
            )
        return self.splits.train.like(images, labels)

    def inverts_images(self) -> bool:
        """Whether the run's loader inverted its images' grey levels (Omniglot's does, by
        default: strokes bright), so image files must be inverted the same way."""
        options = self.config.data.loader_options()
        return self.config.data.name == "omniglot" and bool(options.get("invert", True))

    def read_images(self, paths, *, invert: bool | None = None):
        """Image files (or folders of them) as a dataset preprocessed like the training inputs:
        decoded grey or RGB, resized to the inputs' size, and inverted when the run's loader
        inverts (Omniglot, by default; ``invert`` overrides). Returns ``(dataset, paths)``."""
        from ..data.image_files import image_paths, read_images

        paths = image_paths(
            [paths] if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__") else paths
        )
        if invert is None:
            invert = self.inverts_images()
        images = read_images(paths, self.splits.input_shape, invert=bool(invert))  # 0..255
        pixel_max = float(getattr(self.splits.train, "pixel_max", 255.0))
        if pixel_max != 255.0:  # the loader's own range (digits: 0..16)
            images = np.rint(images * (pixel_max / 255.0)).astype(np.uint8)
        return self.preprocess(images), paths
