"""Resizing to a square without distorting anatomy unless asked.

Report 000 lost days to a loader that silently stretched images; here ``pad``
(the default) keeps the aspect ratio and pads with black, ``crop`` keeps it and
cuts the centre, and only ``stretch`` distorts.
"""

FITS = ("pad", "crop", "stretch")


def fit_size(width, height, size, fit):
    """The (width, height) the image is resized to before padding or cropping."""
    if fit == "stretch":
        return size, size
    scale = size / max(width, height) if fit == "pad" else size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit(image, size, how="pad"):
    """A Pillow ``L`` image resized to ``size`` x ``size`` by the ``how`` rule."""
    from PIL import Image

    width, height = image.size
    new_w, new_h = fit_size(width, height, size, how)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    if (new_w, new_h) == (size, size):
        return image
    if how == "crop":
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return image.crop((left, top, left + size, top + size))
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas
