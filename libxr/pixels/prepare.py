"""One image file to the pixels a model sees: decoded, fitted, expanded to channels.

The one path from a file to pixels: xr-preprocess writes its output to HDF5, and
the datasets (libxr.pixels.datasets) use it for records without an HDF5 row, so
raw-image training and prediction see exactly the pixels preprocessing would store.
"""

import numpy as np

from libxr.pixels.decode import load_drafted, load_gray
from libxr.pixels.enhance import channels
from libxr.pixels.files import MAX_PIXELS
from libxr.pixels.fit import draft_size, fit


def prepare(path, size, how, kinds, max_pixels=MAX_PIXELS, exact=False):
    """(C*size*size bytes, C x 256 histograms) of one image, decoded, fitted and expanded to channels;
    an image of more than ``max_pixels`` is a DecodeError, not decoded. ``exact``: decoded at full
    size and resampled in one step (libxr.pixels.fit), not reduced first."""
    image, box = (load_gray(path, max_pixels), None) if exact else load_drafted(path, draft_size(size, how),
                                                                                 max_pixels)
    return channels(fit(image, size, how, box, exact), kinds)


def prepare_array(path, size, how, kinds, max_pixels=MAX_PIXELS, exact=False):
    """:func:`prepare` as a (C, size, size) uint8 array."""
    data, _ = prepare(path, size, how, kinds, max_pixels, exact)
    return np.frombuffer(data, np.uint8).reshape(len(kinds), size, size)
