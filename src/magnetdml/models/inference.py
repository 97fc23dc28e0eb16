"""A faster eval-mode forward that computes the same function, up to float rounding.

The cluster-index refresh embeds every training example in eval mode with no gradients
(paper §3.2), so its forward pass is the cost of Magnet Loss's machinery. Two changes make
that pass faster without changing what it computes:

- **BatchNorm folding**: in eval mode a ``BatchNorm2d`` is a fixed affine map per channel, so
  when it directly follows a ``Conv2d`` it folds into the conv's weights and bias
  (``torch.nn.utils.fusion.fuse_conv_bn_eval``). Done on a copy: the training model keeps its
  own modules, parameters and running statistics. On one CPU thread folding made cifar-cnn's
  pass ~1.4x faster.
- **oneDNN layout on the CPU**: a network with 2-d convolutions is fed a ``to_mkldnn()``
  tensor, so every conv, ReLU, pooling and linear layer runs on oneDNN's blocked layout and
  the activations are never converted back to NCHW in between. On one thread the small CNN's
  convs then run near the core's peak and its 2x2 max-pools cost >10x less than NCHW's
  (where they took ~40% of the pass); the whole pass is ~2x faster. A network with an
  operation that oneDNN tensors do not support raises on the first batch and falls back to
  the plain layout. An :class:`EmbeddingNet`'s head runs on the dense backbone features
  (``F.normalize`` is such an operation).

Both are for eval mode only: a training step normalises by the batch's statistics.

**bfloat16, on request** (``precision="bfloat16"``, the index refresh's
``index.refresh_precision``): the same pass with bfloat16 weights and activations,
accumulating in float32, and float32 embeddings out. Unlike the two changes above it does
change what is computed: the embeddings carry a relative error of the order of 2^-8 (a
median 0.17% on the trained small CNN, ``benchmarks/results/refresh_precision.json``).
On the CPU it runs on oneDNN's bfloat16 kernels (``torch.utils.mkldnn.to_mkldnn``: weights
reordered once per copy); on this project's AVX512-BF16 CPU the small CNN's pass is ~1.9x
faster on one thread. Elsewhere (a GPU, a network oneDNN cannot run) it is the plain forward
under ``torch.autocast`` in bfloat16.
"""

from __future__ import annotations

import copy
import warnings
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .embedding import EmbeddingNet

#: What :class:`InferenceForward` computes in: float32 (the same function as the model, up to
#: rounding) or bfloat16 (about 1.9x faster where the hardware has bfloat16 kernels).
PRECISIONS = ("float32", "bfloat16")


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` itself when no eval-mode ``BatchNorm2d`` directly follows a ``Conv2d`` in an
    ``nn.Sequential``; otherwise a copy in which each such pair is one ``Conv2d`` (the
    BatchNorm replaced by ``nn.Identity``). Same function of ``(B, C, H, W)`` inputs in eval
    mode, up to float rounding."""
    if not any(_foldable(seq) for seq in model.modules()):
        return model
    folded = copy.deepcopy(model)
    with torch.no_grad():
        for seq in list(folded.modules()):
            for i in _foldable(seq):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return folded


def _foldable(seq: nn.Module) -> list[int]:
    """Positions ``i`` of a plain ``nn.Sequential`` where ``seq[i]`` is a conv and ``seq[i+1]``
    a BatchNorm with running statistics, both in eval mode (exact types only: a subclass may
    compute something else)."""
    if type(seq) is not nn.Sequential:
        return []
    return [
        i
        for i, (conv, bn) in enumerate(pairwise(seq))
        if type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and not (conv.training or bn.training)
        and bn.running_mean is not None
    ]


class InferenceForward:
    """Called as ``x (B, *input_shape) -> model(x) (B, E)`` float32, a dense tensor, through the
    faster path described in the module docstring.

    The oneDNN path applies to 4-d float32 CPU inputs of a model with a ``Conv2d``. Put
    ``model`` in eval mode first and call this under ``torch.inference_mode()`` (or
    ``no_grad``). BatchNorms are folded at construction: make a new one after the weights
    change. ``precision`` is one of :data:`PRECISIONS`; with ``"bfloat16"`` an
    :class:`EmbeddingNet`'s head still runs in float32 (it is a small part of the cost).
    """

    def __init__(self, model: nn.Module, precision: str = "float32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        self.model = fold_batch_norm(model)
        self.low = precision == "bfloat16"
        self.onednn = (
            torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and any(isinstance(m, nn.Conv2d) for m in self.model.modules())
            and (not self.low or _has_bfloat16_kernels())
        )
        self._onednn_net = None  # the bfloat16 oneDNN copy
        if self.onednn and self.low:
            try:
                self._onednn_net = _bfloat16_onednn_copy(self.model)
            except (RuntimeError, ImportError):  # a layer oneDNN cannot hold: autocast
                self.onednn = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.onednn and x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu":
            try:
                if self.low:
                    return self._onednn_forward(self._onednn_net, x.to_mkldnn(torch.bfloat16))
                return self._onednn_forward(self.model, x.to_mkldnn())  # (B, E)
            except RuntimeError:
                # an operation without a oneDNN kernel (e.g. a view, a custom op): use the
                # plain layout for the rest of the pass; a real error will recur there
                self.onednn = False
        if self.low:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.model(x).float()  # (B, E)
        return self.model(x)  # (B, E)

    @staticmethod
    def _onednn_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(net, EmbeddingNet):
            # the head runs on dense float32 features: F.normalize has no oneDNN kernel, and
            # the head is a small part of the cost
            return net.embed_features(_dense(net.features(x)).float())
        return _dense(net(x)).float()


def _has_bfloat16_kernels() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16, AMX); elsewhere it
    would emulate it, slower than float32."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def slow_bfloat16(precision: str, device: torch.device) -> str | None:
    """One line of warning when ``precision`` is bfloat16 on a CPU without bfloat16 kernels,
    where the pass would run slower than in float32; None otherwise."""
    if precision != "bfloat16" or device.type != "cpu" or _has_bfloat16_kernels():
        return None
    return (
        "warning: index.refresh_precision bfloat16 on a CPU without bfloat16 kernels "
        "(AVX512-BF16 or AMX) makes the refreshes slower than float32; "
        "--index.refresh_precision float32 avoids it"
    )


def _bfloat16_onednn_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose convolutions and linear layers hold oneDNN bfloat16 weights
    (an :class:`EmbeddingNet`'s backbone only: its head stays float32)."""
    with warnings.catch_warnings():  # its modules are TorchScript's, which torch deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.utils.mkldnn import to_mkldnn

        net = copy.deepcopy(model)
        if isinstance(net, EmbeddingNet):
            net.backbone = to_mkldnn(net.backbone, torch.bfloat16)
            return net
        return to_mkldnn(net, torch.bfloat16)


def _dense(x: torch.Tensor) -> torch.Tensor:
    return x.to_dense() if x.is_mkldnn else x
