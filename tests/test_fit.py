"""libxr.pixels.fit: pad and crop keep the aspect ratio; only stretch distorts."""

import numpy as np
import pytest
from PIL import Image

from libxr.pixels.fit import fit, fit_size


@pytest.mark.parametrize("w, h, how, expected", [
    pytest.param(200, 100, "pad", (64, 32), id="pad-wide"),
    pytest.param(100, 200, "pad", (32, 64), id="pad-tall"),
    pytest.param(200, 100, "crop", (128, 64), id="crop-wide"),
    pytest.param(200, 100, "stretch", (64, 64), id="stretch-wide"),
    pytest.param(64, 64, "pad", (64, 64), id="pad-already-square"),
])
def test_fit_size(w, h, how, expected):
    assert fit_size(w, h, 64, how) == expected


def test_pad_centres_and_keeps_proportions():
    wide = Image.fromarray(np.full((50, 100), 200, np.uint8))
    out = np.asarray(fit(wide, 40, "pad"))
    assert out.shape == (40, 40)
    assert (out[:10] == 0).all() and (out[30:] == 0).all() and (out[10:30] == 200).all()


def test_crop_cuts_the_centre():
    image = np.zeros((50, 100), np.uint8)
    image[:, 20:80] = 255                                    # a white centre, wider than the crop
    out = np.asarray(fit(Image.fromarray(image), 20, "crop"))
    assert out.shape == (20, 20) and out.min() == 255


def test_stretch_distorts_only_when_asked():
    image = np.zeros((50, 100), np.uint8)
    image[:, :50] = 255
    out = np.asarray(fit(Image.fromarray(image), 20, "stretch"))
    assert out.shape == (20, 20) and out[:, :9].min() == 255 and out[:, 11:].max() == 0
