"""libxr.pixels.files: what counts as an image, and header checks of broken files."""

import numpy as np
import pytest
from PIL import Image

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
