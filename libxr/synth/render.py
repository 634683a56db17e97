"""Radiograph-like pictures drawn with numpy, with findings at known places.

Nothing here pretends to be anatomy; it is enough that a classifier has to
look at the right place to tell the labels apart, that images vary (pose,
exposure, noise) and that every finding has a box, so saliency can be checked
against it.
"""

import numpy as np


def _grid(size):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return y, x


def _ellipse(y, x, cy, cx, ry, rx, soft=0.02):
    d = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return np.clip((1.0 - d) / soft, 0.0, 1.0)


def _blob(y, x, cy, cx, sigma):
    return np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2)))


def _finish(rng, image, size):
    from PIL import Image, ImageFilter

    image = image + rng.normal(0, 0.03, image.shape).astype(np.float32)
    gamma = rng.uniform(0.8, 1.25)
    image = np.clip(image, 0, 1) ** gamma
    pil = Image.fromarray((image * 255).astype(np.uint8), mode="L")
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=max(size / 160, 0.5))))


def _box(cy, cx, sigma, size, spread=2.0):
    """Pixel box [x0, y0, x1, y1] holding the bulk (about 2 sigma) of a blob."""
    lo = lambda c: int(max(0, round((c - spread * sigma) * size)))
    hi = lambda c: int(min(size, round((c + spread * sigma) * size)))
    return [lo(cx), lo(cy), hi(cx), hi(cy)]


def chest(rng, size, findings):
    """A frontal chest film; ``findings`` is a list of (name, cy, cx, sigma, strength).

    Returns the uint8 image and {name: box} for the findings drawn.
    """
    y, x = _grid(size)
    dy, dx = rng.normal(0, 0.015, 2)
    scale = rng.uniform(0.94, 1.06)
    y, x = (y - 0.5 - dy) / scale + 0.5, (x - 0.5 - dx) / scale + 0.5
    image = np.full((size, size), 0.06, np.float32)
    image += 0.38 * _ellipse(y, x, 0.56, 0.5, 0.5, 0.43, soft=0.08)
    lungs = _ellipse(y, x, 0.46, 0.31, 0.29, 0.14, 0.1) + _ellipse(y, x, 0.46, 0.69, 0.29, 0.14, 0.1)
    image -= 0.22 * lungs
    ribs = np.clip(np.sin(2 * np.pi * (y * 9 + 1.6 * (x - 0.5) ** 2)), 0, 1) ** 3
    image += 0.07 * ribs * lungs
    image += 0.25 * _ellipse(y, x, 0.5, 0.5, 0.5, 0.055, 0.3)
    image += 0.18 * _ellipse(y, x, 0.62, 0.55, 0.12, 0.14, 0.2)
    boxes = {}
    for name, cy, cx, sigma, strength in findings:
        cy, cx = cy + rng.normal(0, 0.02), cx + rng.normal(0, 0.02)
        image += strength * rng.uniform(0.8, 1.2) * _blob(y, x, cy, cx, sigma)
        # Boxes are in image coordinates: undo the pose applied to the grid.
        boxes[name] = _box((cy - 0.5) * scale + 0.5 + dy, (cx - 0.5) * scale + 0.5 + dx, sigma * scale, size)
    return _finish(rng, image, size), boxes


def limb(rng, size, part_index, abnormal):
    """A musculoskeletal film: one long bone, its angle set by the body part.

    An abnormal study shows a bright plate (hardware) and a dark fracture line.
    """
    y, x = _grid(size)
    angle = 0.35 * (part_index - 3) + rng.normal(0, 0.08)
    c, s = np.cos(angle), np.sin(angle)
    u = (x - 0.5) * c + (y - 0.5) * s
    v = -(x - 0.5) * s + (y - 0.5) * c
    width = 0.06 + 0.012 * (part_index % 3)
    image = np.full((size, size), 0.05, np.float32)
    image += 0.25 * np.clip((0.3 - np.abs(v)) / 0.08, 0, 1)
    bone = np.clip((width - np.abs(v)) / 0.01, 0, 1) * np.clip((0.42 - np.abs(u)) / 0.02, 0, 1)
    image += 0.45 * bone
    image += 0.2 * _ellipse(u, v, 0.42, 0.0, 0.06, width * 1.6, 0.2)
    boxes = {}
    if abnormal:
        at = rng.uniform(-0.25, 0.25)
        image -= 0.35 * bone * np.exp(-((u - at) ** 2) / (2 * 0.008 ** 2))
        plate = np.clip((0.012 - np.abs(v - width - 0.015)) / 0.004, 0, 1) * (np.abs(u - at) < 0.1)
        image += 0.55 * plate
        cy, cx = 0.5 + at * s + (width + 0.015) * c * 0.5, 0.5 + at * c - (width + 0.015) * s * 0.5
        boxes["abnormal"] = _box(cy, cx, 0.06, size)
    return _finish(rng, image, size), boxes
