"""Batched augmentation of the paper's protocol (§4): random rescale up to 30% then a random
crop back to the input size, optional small jitter and horizontal flip; and test-time
averaging of the embeddings of augmented copies.

Rescaling image ``b`` by ``s_b`` in ``[1, 1 + max_scale]`` and cropping an ``H x W`` window at
offset ``o_b`` is one affine resampling of the original: output pixel ``u`` (normalised
coordinates in [-1, 1]) reads the input at ``u / s_b + t_b`` with ``|t_b| <= 1 - 1/s_b``, so the
window lies inside the rescaled image. All images of a batch are resampled in one
``torch.nn.functional.grid_sample`` call (bilinear) on the batch's device; offsets are
continuous rather than whole pixels of the rescaled image. ``jitter`` adds a translation of up
to ``jitter`` input pixels, which may cross the border (border pixels are repeated there).
Randomness comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .._validation import check_float, check_int


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform [0, 1) draws from ``generator`` (on its own device), moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def rescale_crop(
    x: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Resample ``x (B, C, H, W)``: zoom by ``scales (B,)``, shift by ``offsets (B, 2)``.

    ``offsets`` are (x, y) in normalised coordinates (2 = the image width); ``flip (B,)`` bool
    mirrors horizontally. Scale 1, offset 0 and no flip is the identity.
    """
    b = x.shape[0]
    inv = (1.0 / scales).to(x.dtype)  # (B,)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)  # (B, 2, 3)
    theta[:, 0, 0] = inv if flip is None else torch.where(flip, -inv, inv)
    theta[:, 1, 1] = inv
    theta[:, :, 2] = offsets.to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomRescaleCrop:
    """Random rescale by ``s ~ U[1, 1 + max_scale]`` and random crop back to the input size.

    Args:
        max_scale: the largest extra zoom (0.3 = the paper's "up to 30%"); 0 disables it.
        jitter: extra random translation of up to this many input pixels (0 = none).
        hflip: also mirror half of the images (not for digits or characters).

    ``aug(x, generator)`` maps ``(B, C, H, W)`` to ``(B, C, H, W)`` on ``x``'s device.
    """

    def __init__(self, max_scale: float = 0.3, jitter: float = 0.0, hflip: bool = False) -> None:
        self.max_scale = check_float(
            "max_scale",
            max_scale,
            minimum=0.0,
            maximum=4.0,
            fix="0.3 rescales by up to 30% as in the paper",
        )
        self.jitter = check_float("jitter", jitter, minimum=0.0)
        self.hflip = bool(hflip)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Draw ``(scales (B,), offsets (B, 2), flip (B,) | None)`` for the batch ``x``."""
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        u = _uniform((b, 5), generator, x.device)  # (B, 5)
        scales = 1.0 + self.max_scale * u[:, 0]
        room = 1.0 - 1.0 / scales  # crop stays inside
        offsets = (2.0 * u[:, 1:3] - 1.0) * room[:, None]
        if self.jitter > 0:
            pixel = torch.tensor([2.0 / w, 2.0 / h], device=x.device)  # one pixel, normalised
            offsets = offsets + (2.0 * u[:, 3:5] - 1.0) * self.jitter * pixel / scales[:, None]
        flip = (u[:, 3] < 0.5) if self.hflip else None
        if self.hflip and self.jitter > 0:  # independent of the jitter draws
            flip = _uniform((b,), generator, x.device) < 0.5
        return scales, offsets, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"augmentation needs images of shape (B, C, H, W); got shape "
                f"{tuple(x.shape)} (feature vectors are not augmented)"
            )
        if self.max_scale == 0 and self.jitter == 0 and not self.hflip:
            return x  # exact identity
        return rescale_crop(x, *self.sample(x, generator))

    def __repr__(self) -> str:
        return (
            f"RandomRescaleCrop(max_scale={self.max_scale}, jitter={self.jitter}, "
            f"hflip={self.hflip})"
        )


@torch.no_grad()
def seeded_rescale_crop(
    max_scale: float, seed: int, device: torch.device | str
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Generator]:
    """``(x -> x', generator)``: a :class:`RandomRescaleCrop` drawing from a generator of its
    own on ``device``, seeded with ``seed``, so a run's augmentation replays from its seed
    (the generator is returned for checkpoints)."""
    rescale = RandomRescaleCrop(max_scale=max_scale)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return (lambda x: rescale(x, generator)), generator


def test_time_average(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n: int = 16,
    generator: torch.Generator | None = None,
    augment: RandomRescaleCrop | None = None,
) -> torch.Tensor:
    """Mean embedding of ``n`` augmented copies of ``x`` (paper §4: 16 samples).

    ``model_fn`` maps ``(B, C, H, W)`` to ``(B, D)``; returns ``(B, D)``
    ``= (1/n) sum_i model_fn(augment(x))``. The copies are embedded one batch at a time so
    memory stays that of a single batch.
    """
    n = check_int("n", n, minimum=1, fix="the number of augmented copies to average")
    augment = augment if augment is not None else RandomRescaleCrop()
    total = None
    for _ in range(n):  # n is small (16): a loop over copies, not over examples
        z = model_fn(augment(x, generator)).float()  # (B, D)
        total = z if total is None else total + z
    return total / n


test_time_average.__test__ = False  # not a pytest test despite its name
