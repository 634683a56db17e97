"""Channels built from one grayscale image (report 003's "enhancement layers").

Pretrained networks want three channels; instead of three copies of the same
gray, two of them can carry enhanced versions: histogram equalisation, CLAHE
(contrast-limited adaptive equalisation) or a percentile contrast stretch.
"""

import numpy as np

from libxr.errors import UsageError

CHANNEL_KINDS = ("gray", "equalize", "clahe", "stretch")
SHORTHANDS = {"1": ("gray",), "3": ("gray", "gray", "gray"), "enhanced": ("gray", "clahe", "equalize")}


def parse_channels(spec):
    """``1``, ``3``, ``enhanced`` or a comma list of channel kinds."""
    kinds = SHORTHANDS.get(spec) or tuple(k.strip() for k in spec.split(",") if k.strip())
    unknown = [k for k in kinds if k not in CHANNEL_KINDS]
    if not kinds or unknown:
        raise UsageError(f"--channels {spec!r}: use 1, 3, enhanced or a list of {', '.join(CHANNEL_KINDS)}")
    return kinds


def equalize(gray):
    hist = np.bincount(gray.ravel(), minlength=256)
    cdf = hist.cumsum()
    nonzero = cdf[cdf > 0]
    if nonzero.size == 0 or cdf[-1] == nonzero[0]:
        return gray.copy()
    lut = np.clip(np.round((cdf - nonzero[0]) * 255.0 / (cdf[-1] - nonzero[0])), 0, 255).astype(np.uint8)
    return lut[gray]


def stretch(gray, low=2, high=98):
    lo, hi = np.percentile(gray, (low, high))
    if hi <= lo:
        return gray.copy()
    return np.clip((gray.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def clahe(gray, tiles=8, clip=2.0):
    """CLAHE as in OpenCV's default: ``tiles`` x ``tiles`` regions, clip limit
    ``clip`` times the mean bin count, tile mappings blended bilinearly."""
    h, w = gray.shape
    ty, tx = min(tiles, h), min(tiles, w)
    ys = np.linspace(0, h, ty + 1).astype(int)
    xs = np.linspace(0, w, tx + 1).astype(int)
    luts = np.empty((ty, tx, 256), np.float32)
    for i in range(ty):
        for j in range(tx):
            tile = gray[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            hist = np.bincount(tile.ravel(), minlength=256).astype(np.float32)
            limit = max(clip * tile.size / 256.0, 1.0)
            excess = np.maximum(hist - limit, 0).sum()
            hist = np.minimum(hist, limit) + excess / 256.0
            cdf = hist.cumsum()
            luts[i, j] = cdf * (255.0 / max(cdf[-1], 1.0))
    # Each pixel blends the mappings of the four nearest tile centres.
    cy = (ys[:-1] + ys[1:]) / 2.0
    cx = (xs[:-1] + xs[1:]) / 2.0
    fy = np.clip(np.interp(np.arange(h), cy, np.arange(ty)), 0, ty - 1)
    fx = np.clip(np.interp(np.arange(w), cx, np.arange(tx)), 0, tx - 1)
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, ty - 1), np.minimum(x0 + 1, tx - 1)
    wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
    g = gray.astype(np.intp)
    top = luts[y0[:, None], x0[None, :], g] * (1 - wx) + luts[y0[:, None], x1[None, :], g] * wx
    bottom = luts[y1[:, None], x0[None, :], g] * (1 - wx) + luts[y1[:, None], x1[None, :], g] * wx
    return np.clip(top * (1 - wy) + bottom * wy + 0.5, 0, 255).astype(np.uint8)


_MAKERS = {"equalize": equalize, "clahe": clahe, "stretch": stretch}


def channels(image, kinds):
    """The channels ``kinds`` of a Pillow ``L`` image: (C*H*W bytes, C x 256 histograms).

    Bytes and histograms, because that is what the HDF5 writer stores (as raw
    chunks) and the train statistics need; plain gray never leaves Pillow.
    """
    import numpy as np

    made = {}
    planes, hists = [], []
    for kind in kinds:
        if kind not in made:
            if kind == "gray":
                made[kind] = (image.tobytes(), image.histogram())
            else:
                plane = _MAKERS[kind](np.asarray(image))
                made[kind] = (plane.tobytes(), np.bincount(plane.ravel(), minlength=256))
        planes.append(made[kind][0])
        hists.append(made[kind][1])
    return b"".join(planes) if len(planes) > 1 else planes[0], np.asarray(hists, np.int64)
