"""libxr.pixels.files: what counts as an image, and header checks of broken files."""

import numpy as np
import pytest
from conftest import bomb_png, dicom_file
from PIL import Image

from libxr.pixels.decode import DecodeError, load_gray
from libxr.pixels.files import check_headers, header_problem, is_image_name


@pytest.mark.parametrize("name, expected", [
    ("a.png", True), ("b.JPEG", True), ("c.dcm", True), (".DS_Store", False), ("Thumbs.db", False),
    ("notes.txt", False), ("._a.png", False),
])
def test_is_image_name(name, expected):
    assert is_image_name(name) is expected


def test_header_problems(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(good)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 200)
    assert header_problem(str(good)) is None
    assert header_problem(str(tmp_path / "empty.png")) == "empty file"
    assert header_problem(str(tmp_path / "text.png")) == "not an image PIL can read"
    assert header_problem(str(tmp_path / "missing.png")) == "missing"
    assert header_problem(str(tmp_path / "empty.dcm")) == "empty file"
    assert header_problem(str(tmp_path / "bad.dcm")) is not None


def test_check_headers_keeps_order(tmp_path):
    paths = []
    for i in range(10):
        p = tmp_path / f"{i}.png"
        if i % 3:
            Image.fromarray(np.zeros((2, 2), np.uint8)).save(p)
        paths.append(str(p))
    out = list(check_headers(({"path": p} for p in paths), workers=4, chunk=3))
    assert [r["path"] for r, _ in out] == paths
    assert [problem for _, problem in out] == ["missing" if i % 3 == 0 else None for i in range(10)]


def test_a_dicom_without_an_image_fails_the_header_check_and_decoding(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    path = dicom_file(tmp_path / "report.dcm", np.zeros((2, 2)))
    ds = pydicom.dcmread(str(path))
    for tag in ("Rows", "Columns", "PixelData"):
        delattr(ds, tag)
    ds.save_as(str(path), enforce_file_format=True)
    assert header_problem(str(path)) == "DICOM without an image (no Rows and Columns)"
    with pytest.raises(DecodeError, match=r"^DICOM without an image \(no Rows and Columns\)$"):
        load_gray(str(path))


def test_header_check_refuses_images_over_max_pixels(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png", 30000, 30000)
    small = bomb_png(tmp_path / "small.png", 64, 48)
    claims = dicom_file(tmp_path / "claims.dcm", np.zeros((2, 2)), claim=(20000, 30000))
    assert header_problem(str(bomb)) == "30000x30000 is over --max-pixels 100000000"
    assert header_problem(str(claims)) == "30000x20000 is over --max-pixels 100000000"
    assert header_problem(str(small)) is None
    out = check_headers(({"path": str(p)} for p in (small, bomb, claims)), max_pixels=3072)
    assert [problem for _, problem in out] == [None, "30000x30000 is over --max-pixels 3072",
                                               "30000x20000 is over --max-pixels 3072"]
    assert header_problem(str(small), max_pixels=3071) == "64x48 is over --max-pixels 3071"
