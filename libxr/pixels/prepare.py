"""One image file to the pixels a model sees: decoded, fitted, expanded to channels.

The one path from a file to pixels: xr-preprocess writes its output to HDF5, and
the datasets (libxr.pixels.datasets) use it for records without an HDF5 row, so
raw-image training and prediction see exactly the pixels preprocessing would store.
"""

import numpy as np

from libxr.pixels.decode import load_gray
from libxr.pixels.enhance import channels
from libxr.pixels.files import MAX_PIXELS
from libxr.pixels.fit import fit


def prepare(path, size, how, kinds, max_pixels=MAX_PIXELS):
    """(C*size*size bytes, C x 256 histograms) of one image, decoded, fitted and expanded to channels;
    an image of more than ``max_pixels`` is a DecodeError, not decoded."""
    return channels(fit(load_gray(path, draft=(size, size), max_pixels=max_pixels), size, how), kinds)


def prepare_array(path, size, how, kinds, max_pixels=MAX_PIXELS):
    """:func:`prepare` as a (C, size, size) uint8 array."""
    data, _ = prepare(path, size, how, kinds, max_pixels)
    return np.frombuffer(data, np.uint8).reshape(len(kinds), size, size)
