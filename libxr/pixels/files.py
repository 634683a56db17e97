"""Which files are images, and whether one can be opened (header only, no decode)."""

import os

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif",
                              ".pgm", ".webp", ".dcm", ".dicom"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})


def is_image_name(name):
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def header_problem(path):
    """Why the image at ``path`` cannot be opened, or None if its header reads fine."""
    try:
        if os.path.splitext(path)[1].lower() in DICOM_EXTENSIONS:
            return _dicom_problem(path)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                if image.width < 1 or image.height < 1:
                    return "image has no pixels"
        except UnidentifiedImageError:
            return "not an image PIL can read" if os.path.getsize(path) else "empty file"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _dicom_problem(path):
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
        pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        return f"unreadable DICOM: {' '.join(str(exc).split())}"     # pydicom's messages span lines
    return None


def check_headers(records, workers=None, chunk=256):
    """Yield ``(record, problem)`` for each record, opening image headers in parallel."""
    return _alongside(records, header_problem, workers, chunk)


def with_sha256(records, workers=None, chunk=256):
    """Yield each record with `sha256`, the hex digest of its file's bytes (absent if unreadable):
    byte-identical images share it, so ``xr-split --group-by sha256`` keeps copies in one split."""
    for rec, digest in _alongside(records, file_sha256, workers, chunk):
        yield rec if digest is None else {**rec, "sha256": digest}


def file_sha256(path):
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


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
