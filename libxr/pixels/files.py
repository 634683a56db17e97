"""Which files are images, whether one can be opened, and whether it is too large to decode
(header only, no decode)."""

import functools
import os

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif",
                              ".pgm", ".webp", ".dcm", ".dicom"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
MAX_PIXELS = 100_000_000
"""--max-pixels' default, 10,000 x 10,000: above any radiograph (a 43 cm detector at 0.1 mm
is 4,300 px a side) and at most about 0.7 GB decoded (16-bit, before conversion to 8 bits)."""


def is_image_name(name):
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_image_file(path):
    """:func:`is_image_name`, or a file without an image's extension that holds DICOM (PACS exports
    name files IM0001, or by their UIDs, 1.2.840.113619...): told by its preamble, 132 bytes read."""
    name = os.path.basename(path)
    return is_image_name(name) or (not name.startswith(".") and is_dicom(path))


def is_dicom(path):
    """Whether ``path`` is read as DICOM: its extension, or none (or a UID's digits) and the DICM preamble."""
    name = os.path.basename(path)
    return os.path.splitext(name)[1].lower() in DICOM_EXTENSIONS or (_unnamed(name) and _dicom_preamble(path))


def _unnamed(name):
    """No extension, or only the last part of a UID (digits) where one would be."""
    extension = os.path.splitext(name)[1]
    return not extension or extension[1:].isdigit()


def _dicom_preamble(path):
    """Whether the regular file ``path`` starts as DICOM does. Only a regular file is read: a FIFO
    would block, and a pipe (/dev/stdin) would lose its first bytes to the probe."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb", buffering=0) as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def size_problem(width, height, max_pixels):
    """Why an image of ``width`` x ``height`` is not decoded, or None.

    A decompression bomb (a few KB of PNG that decode to gigabytes) is refused from
    its header, before any pixel is decoded, so one crafted file cannot take a
    worker's memory; it then counts as unreadable like any other bad image.
    """
    if width * height > max_pixels:
        return f"{width}x{height} is over --max-pixels {max_pixels}"
    return None


def open_pillow(path):
    """``PIL.Image.open(path)`` (header only), without Pillow's own decompression-bomb check:
    xr's (:func:`size_problem`) has a limit the user sets and a reason recorded like any
    unreadable image's, where Pillow's raises at a fixed limit (and only warns below twice it)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image.open(path)


def header_problem(path, max_pixels=MAX_PIXELS):
    """Why the image at ``path`` cannot be opened or is too large, or None if its header reads fine."""
    try:
        if is_dicom(path):
            return _dicom_problem(path, max_pixels)
        from PIL import UnidentifiedImageError

        try:
            with open_pillow(path) as image:
                if image.width < 1 or image.height < 1:
                    return "image has no pixels"
                return size_problem(image.width, image.height, max_pixels)
        except UnidentifiedImageError:
            return "not an image PIL can read" if os.path.getsize(path) else "empty file"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return exc.strerror or str(exc)


def _dicom_problem(path, max_pixels):
    with open(path, "rb") as f:
        head = f.read(132)
    if len(head) == 0:
        return "empty file"
    try:
        import pydicom
    except ImportError:
        # Without the optional extra, the preamble magic is all that can be checked.
        return None if head[128:132] == b"DICM" else "no DICOM preamble (DICM)"
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return dicom_size_problem(ds, max_pixels)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files, and a header
        return dicom_error(exc)  # may hold anything (Rows [64, 64])


def dicom_error(exc, syntax=""):
    """pydicom's error as one line a user can act on (its messages span lines, and the one for
    a file without the DICOM preamble tells the programmer to pass force=True)."""
    from pydicom.errors import InvalidDicomError

    if isinstance(exc, InvalidDicomError):
        return "not a DICOM file (no 'DICM' preamble and file meta information)"
    return f"unreadable DICOM{syntax}: {' '.join(str(exc).split())}"


def dicom_size_problem(ds, max_pixels):
    """:func:`size_problem` of a DICOM dataset's frame, Columns x Rows (xr decodes the first frame only);
    a dataset without them holds no image (a structured report, a dose sheet)."""
    columns, rows = int(getattr(ds, "Columns", 0) or 0), int(getattr(ds, "Rows", 0) or 0)
    if columns < 1 or rows < 1:
        return "DICOM without an image (no Rows and Columns)"
    return size_problem(columns, rows, max_pixels)


def check_headers(records, workers=None, chunk=256, max_pixels=MAX_PIXELS):
    """Yield ``(record, problem)`` for each record, opening image headers in parallel."""
    return _alongside(records, functools.partial(header_problem, max_pixels=max_pixels), workers, chunk)


def with_sha256(records, workers=None, chunk=256, unreadable=lambda rec, reason: None):
    """Yield each record with `sha256`, the hex digest of its file's bytes: byte-identical images
    share it, so ``xr-split --group-by sha256`` keeps copies in one split. A file that cannot be
    read keeps its record, without `sha256`, and ``unreadable`` hears why."""
    for rec, (digest, reason) in _alongside(records, _sha256, workers, chunk):
        if digest is None:
            if reason is not None:
                unreadable(rec, reason)
            yield rec
        else:
            yield {**rec, "sha256": digest}


def _sha256(path):
    """(hex digest, None) of the file's bytes, or (None, why it cannot be read); (None, None) for a
    missing file, which xr-index counts as missing already."""
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest(), None
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, exc.strerror or str(exc)


def _alongside(records, fn, workers=None, chunk=256):
    """Yield ``(record, fn(record's path))`` in order, computed by threads (I/O-bound work);
    at most ``chunk`` records are in flight, so a manifest of any size streams through."""
    import concurrent.futures
    import itertools

    workers = workers or min(32, (os.cpu_count() or 1) * 4)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        records = iter(records)
        while batch := list(itertools.islice(records, chunk)):
            yield from zip(batch, pool.map(fn, [r["path"] for r in batch]))
