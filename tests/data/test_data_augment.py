"""Batched rescale-and-crop augmentation (paper §4) and test-time averaging."""

import pytest
import torch
import torch.nn.functional as F

from magnetdml.data import augment
from magnetdml.data.augment import RandomRescaleCrop, rescale_crop


def images(b=6, c=3, h=12, w=10, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_shapes_dtype_and_device_are_kept():
    x = images().double()
    y = RandomRescaleCrop(0.3, jitter=1.0, hflip=True)(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device


def test_same_seed_same_output_other_seed_differs():
    aug, x = RandomRescaleCrop(0.3, jitter=1.0), images()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_identity_when_max_scale_is_zero():
    x = images()
    assert torch.equal(RandomRescaleCrop(max_scale=0.0)(x, torch.Generator()), x)
    ones = torch.ones(x.shape[0])
    same = rescale_crop(x, ones, torch.zeros(x.shape[0], 2))  # the resampling path itself
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)


def test_crop_stays_inside_the_rescaled_image():
    aug, x = RandomRescaleCrop(max_scale=0.3), images(b=500)
    scales, offsets, flip = aug.sample(x, torch.Generator().manual_seed(1))
    assert flip is None
    assert scales.min() >= 1.0 and scales.max() <= 1.3
    room = 1 - 1 / scales
    assert (offsets.abs() <= room[:, None] + 1e-7).all()
    # The sampling grid (normalised input coordinates read by the corner pixels) lies in the
    # image: |u / s + t| <= 1 for the outermost pixel edges u = +-1.
    edges = (1 / scales[:, None] + offsets.abs()).max()
    assert edges <= 1 + 1e-6


def test_rescale_crop_matches_an_explicit_zoom_and_crop():
    """Zoom by 2 with integer crop offsets equals interpolate-then-slice (slow reference)."""
    x = images(b=1, c=1, h=8, w=8)
    big = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # (1,1,16,16)
    # Offset t (normalised) shifts the window centre by t * 8 input px = t * 16 output px / 2.
    top, left = 4, 2  # crop big[4:12, 2:10]
    t = torch.tensor([[(left - 4) / 8 * 2 / 2, (top - 4) / 8 * 2 / 2]])  # (x, y)
    got = rescale_crop(x, torch.tensor([2.0]), t)
    ref = big[..., top : top + 8, left : left + 8]
    torch.testing.assert_close(got[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_hflip_mirrors():
    x = images(b=1)
    flipped = rescale_crop(x, torch.ones(1), torch.zeros(1, 2), torch.tensor([True]))
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)


def test_test_time_average_is_the_mean_of_augmented_embeddings():
    x, aug = images(b=4), RandomRescaleCrop(0.3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 10, 5))
    got = augment.test_time_average(
        model, x, n=3, generator=torch.Generator().manual_seed(2), augment=aug
    )
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        ref = sum(model(aug(x, g)) for _ in range(3)) / 3  # slow obvious reference
    torch.testing.assert_close(got, ref)
    assert got.shape == (4, 5)
    identity = augment.test_time_average(model, x, n=4, augment=RandomRescaleCrop(0.0))
    with torch.no_grad():
        torch.testing.assert_close(identity, model(x))


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="max_scale must be >= 0.0"):
        RandomRescaleCrop(max_scale=-0.1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\); got shape \(4, 7\)"):
        RandomRescaleCrop()(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="n must be >= 1"):
        augment.test_time_average(lambda t: t, images(), n=0)
