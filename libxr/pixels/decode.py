"""Reading any radiograph file into one 8-bit grayscale array.

PNG/JPEG/TIFF of 8 or 16 bits in L, I, RGB(A) or palette modes go through
Pillow; DICOM through pydicom (the optional ``dicom`` extra) with the modality
LUT (rescale slope/intercept), the VOI LUT or window, and MONOCHROME1 inverted
so that bone is always bright. An image larger than ``max_pixels`` (read from its
header) is a DecodeError before any pixel is decoded: memory per image is bounded.
"""

import contextlib
import os
import warnings

import numpy as np

from libxr.errors import XRError
from libxr.pixels.files import (
    MAX_PIXELS,
    dicom_error,
    dicom_size_problem,
    is_dicom,
    open_pillow,
    size_problem,
)


class DecodeError(XRError):
    """An image that cannot be turned into pixels; the message says why."""


def _to_uint8(array):
    """Linear map of the image's own range onto 0..255 (16-bit, DICOM, float data)."""
    array = np.asarray(array, np.float32)
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros(array.shape, np.uint8)
    return ((array - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)


LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R 601 luma weights, Pillow's own for RGB to L."""


def load_gray(path, max_pixels=MAX_PIXELS):
    """The image at ``path`` as an 8-bit grayscale Pillow image (mode ``L``), decoded at full size.

    A Pillow image, not an array: resizing and padding stay in Pillow's C code
    and the pixels are copied once, at the end (see libxr.pixels.fit).
    """
    return load_drafted(path, None, max_pixels)[0]


def load_drafted(path, want, max_pixels=MAX_PIXELS):
    """(8-bit gray Pillow image, box) of ``path``; a JPEG decoded straight to gray, and at 1/2, 1/4 or
    1/8 scale (DCT scaling, the costly full decode skipped) when that still leaves ``want(width,
    height)``, the least (width, height) the caller needs of an image that size.

    ``box``: the region of the image that holds the whole picture, for ``resize(box=...)``;
    fractional when the scale does not divide the size, None for a full-size decode.
    ``want`` None decodes as :func:`load_gray` does.
    """
    if is_dicom(path):
        from PIL import Image

        return Image.fromarray(_load_dicom(path, max_pixels)), None
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            raise DecodeError("empty file")
        with open_pillow(path) as image:
            problem = size_problem(image.width, image.height, max_pixels)
            if problem:
                raise DecodeError(problem)
            box = None
            if want is not None and image.format == "JPEG":
                size = image.size
                drafted = image.draft("L", want(*size))      # None when the file's layout allows no draft
                box = drafted[1] if drafted and image.size != size else None
            deep = image.mode in ("RGB", "RGBA", "LA") and _sixteen_bit(image)     # told by the tiles, before load
            image.load()
            gray = _pil_gray(image)
            if not deep:
                return gray, box
            # Pillow keeps only the high byte of 16-bit colour (a 12-bit film in it is 0..16): stretched
            # over its own range, it is at least not near black; a constant one holds no picture at all
            levels = np.asarray(gray)
            if levels.min() == levels.max():
                raise DecodeError("16-bit colour image whose high bytes are all one value: Pillow reads no "
                                  "more of it; save it as 16-bit gray")
            return Image.fromarray(_to_uint8(levels)), box
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError("missing") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:   # truncated and corrupt files land here
        raise DecodeError(f"unreadable image: {exc}") from None


def _sixteen_bit(image):
    """Whether Pillow decodes ``image`` from 16 bits a sample (its tiles' raw mode: ``RGB;16B``)."""
    for tile in image.tile:
        raw = tile[3] if isinstance(tile[3], str) else (tile[3][0] if tile[3] else "")
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def _pil_gray(image):
    from PIL import Image

    mode = image.mode
    if mode == "L":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image)))
    if mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent pixels are air: composite on black before dropping alpha.
        image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image.convert("RGBA"))
    return image.convert("L")


def _load_dicom(path, max_pixels):
    """The first frame of a DICOM file, grey, with its LUTs: uncompressed or as hospitals send them
    (JPEG baseline, 12-bit extended and lossless, JPEG-LS, JPEG 2000, RLE: the decoders of the
    ``dicom`` extra). An image over ``max_pixels`` is refused from its header, before any pixel is
    read, and only the first frame is decoded (pixel data longer than one frame's, without
    NumberOfFrames, too). Any fault of the file — pydicom's errors, a LUT with a blank or
    non-numeric value — is one line; pydicom's warnings (excess padding) are not printed."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise DecodeError("DICOM needs pydicom: pip install 'xr-toolkit[dicom]'") from None
    syntax = ""
    try:
        if os.path.getsize(path) == 0:
            raise DecodeError("empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            syntax = f" ({ds.file_meta.TransferSyntaxUID.name})" if "TransferSyntaxUID" in ds.file_meta else ""
            problem = dicom_size_problem(ds, max_pixels)
            if problem:
                raise DecodeError(problem)
            pixels = _first_frame(pydicom, path, ds)
            if pixels.ndim == 3:        # colour (rare for radiographs): luma, as for every other image
                pixels = pixels[..., :3].astype(np.float64) @ LUMA
            pixels = apply_modality_lut(pixels, ds)
            if "WindowCenter" in ds or "VOILUTSequence" in ds:
                pixels = apply_voi_lut(pixels, ds)
            gray = _to_uint8(pixels)
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError("missing") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad or compressed files
        raise DecodeError(dicom_error(exc, syntax)) from None
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        gray = 255 - gray
    return gray


def _first_frame(pydicom, path, header):
    """Frame 0's pixels. A multi-frame file's is read alone from the file, so memory is one frame's
    (a 150-frame 1000 x 1000 file took 346 MB read whole); a file pydicom cannot read frame by
    frame, and a single frame, are read whole."""
    if int(header.get("NumberOfFrames") or 1) > 1:
        with contextlib.suppress(Exception):    # then the whole file, whose error (if any) is the one to tell
            return pydicom.pixels.pixel_array(path, index=0)
    return pydicom.pixels.pixel_array(pydicom.dcmread(path), index=0)
