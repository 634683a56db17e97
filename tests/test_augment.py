"""libxr.pixels.augment: normalisation, the affine grid, seeded augmentation of batches."""

import math

import pytest
import torch
import torch.nn.functional as F

from libxr.pixels.augment import AugmentOptions, BatchTransform, _affine_grid


def batch(b=4, c=1, size=32):
    return torch.randint(0, 256, (b, c, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_normalisation_is_exact():
    x = batch(c=2)
    out = BatchTransform([0.5, 0.25], [0.2, 0.1])(x)
    expected = (x.float() / 255 - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor([0.2, 0.1]).view(1, 2, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_gray_expands_to_three_channels():
    out = BatchTransform([0.5], [0.2], out_channels=3)(batch())
    assert out.shape == (4, 3, 32, 32) and torch.equal(out[:, 0], out[:, 2])


def test_affine_grid_matches_torch():
    theta = torch.randn(5, 2, 3)
    assert torch.allclose(_affine_grid(theta, 17, 23), F.affine_grid(theta, [5, 1, 17, 23], align_corners=False),
                          atol=1e-5)


def test_no_augmentation_outside_training():
    transform = BatchTransform([0.5], [0.2], AugmentOptions.reference())
    x = batch()
    assert torch.equal(transform(x), transform(x)) and torch.equal(transform(x), BatchTransform([0.5], [0.2])(x))


def test_horizontal_flip_mirrors_exactly():
    x = batch()
    flipped = BatchTransform([0], [1], AugmentOptions(hflip=1.0))(x, train=True)
    assert torch.allclose(flipped * 255, x.flip(-1).float(), atol=1e-3)


def test_rotation_by_90_degrees_turns_the_image():
    x = batch(size=16)
    options = AugmentOptions(rotation=90)
    transform = BatchTransform([0], [1], options, seed=3)
    gen = torch.Generator().manual_seed(3)
    angle = (torch.rand(4, generator=gen) * 180 - 90)      # the draws the transform will make
    assert angle.abs().max() <= 90
    out = transform(x, train=True) * 255
    assert out.shape == x.shape and not torch.allclose(out, x.float())


def test_seeded_and_varied():
    x = batch(b=8)
    options = AugmentOptions.reference()
    a = BatchTransform([0.5], [0.2], options, seed=7)(x, train=True)
    b = BatchTransform([0.5], [0.2], options, seed=7)(x, train=True)
    c = BatchTransform([0.5], [0.2], options, seed=8)(x, train=True)
    assert torch.equal(a, b) and not torch.equal(a, c)
    transform = BatchTransform([0.5], [0.2], options, seed=7)
    assert not torch.equal(transform(x, train=True), transform(x, train=True))  # each batch draws anew


def test_crop_zooms_in():
    ramp = (torch.arange(64) * 4).to(torch.uint8).expand(2, 1, 64, 64).contiguous()  # +4 per column
    out = BatchTransform([0], [1], AugmentOptions(crop_scale=(0.25, 0.25), crop_ratio=(1, 1)))(ramp, train=True)
    step = (out[..., 8:56, 9:56] - out[..., 8:56, 8:55]).mean() * 255
    assert step == pytest.approx(2.0, abs=0.1)          # half the side: a 2x zoom halves the slope


@pytest.mark.parametrize("brightness, contrast", [(0.5, 0.0), (0.0, 0.5)])
def test_jitter_stays_in_range(brightness, contrast):
    x = batch(b=16)
    out = BatchTransform([0], [1], AugmentOptions(brightness=brightness, contrast=contrast))(x, train=True)
    assert out.min() >= 0 and out.max() <= 1 + 1e-6
    assert not torch.allclose(out, x.float() / 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_on_the_gpu():
    out = BatchTransform([0.5], [0.2], AugmentOptions.reference())(batch().cuda(), train=True)
    assert out.is_cuda and math.isfinite(out.sum().item())
