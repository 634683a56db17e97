"""libxr.pixels.enhance: channel specs, equalisation, CLAHE, contrast stretch."""

import numpy as np
import pytest
from PIL import Image

from libxr.errors import UsageError
from libxr.pixels.enhance import channels, clahe, equalize, parse_channels, stretch


@pytest.mark.parametrize("spec, kinds", [
    pytest.param("1", ("gray",), id="one-channel"),
    pytest.param("3", ("gray", "gray", "gray"), id="three-gray-channels"),
    pytest.param("enhanced", ("gray", "clahe", "equalize"), id="enhanced"),
    pytest.param("gray, stretch", ("gray", "stretch"), id="list-with-spaces"),
])
def test_parse_channels(spec, kinds):
    assert parse_channels(spec) == kinds


@pytest.mark.parametrize("spec", ["", "4", "gray,sharpen"])
def test_bad_channel_specs(spec):
    with pytest.raises(UsageError, match="--channels"):
        parse_channels(spec)


def low_contrast():
    rng = np.random.default_rng(0)
    return rng.integers(100, 140, (64, 64)).astype(np.uint8)


def test_equalize_and_stretch_spread_the_histogram():
    image = low_contrast()
    for out in (equalize(image), stretch(image)):
        assert out.dtype == np.uint8 and out.min() <= 10 and out.max() >= 245
        # monotone: the order of pixel values is kept
        order = np.argsort(image.ravel(), kind="stable")
        assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()


def test_clahe_limits_contrast_and_adapts_locally():
    image = low_contrast()
    image[:, 32:] += 80                        # a brighter right half
    out = clahe(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[:, :24].std() > image[:, :24].std() * 2       # local contrast raised in both halves
    assert out[:, 40:].std() > image[:, 40:].std() * 2
    flat = np.full((64, 64), 90, np.uint8)
    assert np.ptp(clahe(flat)) <= 1                           # the clip limit keeps a flat image flat


def test_channels_bytes_and_histograms():
    image = Image.fromarray(low_contrast())
    data, hists = channels(image, ("gray", "equalize", "gray"))
    planes = np.frombuffer(data, np.uint8).reshape(3, 64, 64)
    assert (planes[0] == np.asarray(image)).all() and (planes[2] == planes[0]).all()
    assert (planes[1] == equalize(np.asarray(image))).all()
    assert hists.shape == (3, 256) and (hists.sum(1) == 64 * 64).all()
    assert (hists[1] == np.bincount(planes[1].ravel(), minlength=256)).all()
