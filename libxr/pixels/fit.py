"""Resizing to a square without distorting anatomy unless asked.

Report 000 lost days to a loader that silently stretched images; here ``pad``
(the default) keeps the aspect ratio and pads with black, ``crop`` keeps it and
cuts the centre, and only ``stretch`` distorts.

Resampling is bilinear. By default a large image is first shrunk cheaply by an
integer factor (JPEG: DCT scaling while decoding, see libxr.pixels.decode; any
image: ``Image.reduce``, a box filter) to no less than :data:`REDUCING_GAP` times
the target, and bilinear resampling does the rest: much faster from 2,000 px, and
within a grey level or so of the exact path on average (docs/xr-preprocess.md);
``exact`` resamples the full-size image in one step.
"""

FITS = ("pad", "crop", "stretch")

REDUCING_GAP = 2.0
"""How much larger than the target the cheap integer reduction stops (Pillow's ``reducing_gap``):
at 2 the bilinear step still sees every source pixel it would, about as the exact path does."""


def fit_size(width, height, size, fit):
    """The (width, height) the image is resized to before padding or cropping."""
    if fit == "stretch":
        return size, size
    scale = size / max(width, height) if fit == "pad" else size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def draft_size(size, how):
    """``want(width, height)`` for libxr.pixels.decode.load_drafted: the fitted size times the gap."""
    return lambda width, height: tuple(int(REDUCING_GAP * v) for v in fit_size(width, height, size, how))


def fit(image, size, how="pad", box=None, exact=False):
    """A Pillow ``L`` image resized to ``size`` x ``size`` by the ``how`` rule.

    ``box``: the region of ``image`` that holds the picture (a JPEG decoded at reduced scale:
    fractional); its width and height set the geometry, so a drafted image lands exactly where the
    full-size one would. ``exact``: no integer reduction first.
    """
    from PIL import Image

    width, height = box[2:] if box else image.size
    new_w, new_h = fit_size(width, height, size, how)
    if box or (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, box=box,
                             reducing_gap=None if exact else REDUCING_GAP)
    if (new_w, new_h) == (size, size):
        return image
    if how == "crop":
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return image.crop((left, top, left + size, top + size))
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas
