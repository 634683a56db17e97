"""libxr.pixels.decode: every supported file becomes 8-bit grayscale; bad files raise DecodeError,
and an image over --max-pixels is unreadable in every command that decodes."""

import glob
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from conftest import bomb_png, dicom_file, write_jsonl
from PIL import Image

from libxr.pixels.decode import DecodeError, load_drafted, load_gray


def gray_of(path, **kw):
    return np.asarray(load_gray(str(path), **kw))


def test_8bit_modes_become_luma(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(np.full((4, 6), 77, np.uint8)).save(tmp_path / "l.png")
    assert gray_of(tmp_path / "l.png").tolist() == np.full((4, 6), 77).tolist()
    assert np.all(gray_of(tmp_path / "rgb.png") == round(200 * 0.299))
    assert gray_of(tmp_path / "p.png").shape == (4, 6)


def test_rgba_transparency_is_black(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, 3] = 255          # one opaque white pixel, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert gray_of(tmp_path / "a.png").tolist() == [[255, 0], [0, 0]]


def test_16bit_uses_the_full_range(tmp_path):
    data = np.array([[1000, 2000], [3000, 4000]], np.uint16)
    Image.fromarray(data).save(tmp_path / "16.png")
    assert gray_of(tmp_path / "16.png").tolist() == [[0, 85], [170, 255]]


def test_jpeg_draft_decodes_large_files_smaller_but_not_below_what_is_wanted(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 644, 3), np.uint8))
    image.save(tmp_path / "big.jpg")
    image.save(tmp_path / "big.png")
    full = load_gray(str(tmp_path / "big.jpg"))
    drafted, box = load_drafted(str(tmp_path / "big.jpg"), lambda w, h: (224, 224))
    assert full.size == (644, 800)
    # 1/2 scale (1/4 would be under 224 wide); the box is the picture: 644 / 2 = 322, 800 / 2 = 400
    assert drafted.size == (322, 400) and drafted.mode == "L" and box == (0, 0, 322, 400)
    png, box = load_drafted(str(tmp_path / "big.png"), lambda w, h: (224, 224))
    assert png.size == (644, 800) and box is None            # PNG has no reduced decode


def test_dicom_monochrome2_and_monochrome1(tmp_path):
    pixels = np.array([[0, 1000], [2000, 4000]])
    normal = gray_of(dicom_file(tmp_path / "a.dcm", pixels))
    inverted = gray_of(dicom_file(tmp_path / "b.dcm", pixels, photometric="MONOCHROME1"))
    assert normal[1, 1] == 255 and normal[0, 0] == 0
    assert (inverted == 255 - normal).all()


def test_dicom_window_clips_to_the_window(tmp_path):
    pixels = np.array([[0, 1000], [2000, 4000]])
    windowed = gray_of(dicom_file(tmp_path / "w.dcm", pixels, slope=2, intercept=-1000, window=(1000, 1000)))
    # modality 2p - 1000: [-1000, 1000], [3000, 7000]; the window 500..1500 puts 1000 mid-grey
    assert windowed[0, 0] == 0 and abs(int(windowed[0, 1]) - 128) <= 1 and windowed[1].tolist() == [255, 255]


@pytest.mark.parametrize("name, content, reason", [
    pytest.param("empty.png", b"", "empty file", id="empty-png"),
    pytest.param("text.png", b"this is not an image", "not an image Pillow can read", id="text-named-png"),
    pytest.param("missing.png", None, "missing", id="missing-file"),
    pytest.param("empty.dcm", b"", "empty file", id="empty-dicom"),
    pytest.param("junk.dcm", b"\0" * 300, r"not a DICOM file \(no 'DICM' preamble", id="zero-bytes-named-dicom"),
])
def test_bad_files(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        load_gray(str(path))


def test_truncated_jpeg(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300), np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="unreadable image"):
        load_gray(str(tmp_path / "t.jpg"))


def bundled_dicom(name):
    """A test file shipped inside pydicom (never downloaded: get_testdata_file would fetch missing ones)."""
    pydicom = pytest.importorskip("pydicom")
    path = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", name)
    if not os.path.exists(path):
        pytest.skip(f"this pydicom ({pydicom.__version__}) does not ship {name}")
    return path


def compressed_bundled_dicoms():
    """Every DICOM file pydicom ships whose pixel data is compressed."""
    try:
        import pydicom
    except ImportError:
        return []
    found = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "*.dcm"))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path)
            except pydicom.errors.InvalidDicomError:      # bundled without a preamble, on purpose
                continue
        if "PixelData" in ds and "TransferSyntaxUID" in ds.file_meta and ds.file_meta.TransferSyntaxUID.is_compressed:
            found.append(os.path.basename(path))
    return found


CORRUPT = {"JPEG-lossy.dcm": "misplaced marker segment",          # pydicom's README: JPGExtended.dcm is its fix
           "JPEG2000-embedded-sequence-delimiter.dcm": "J2K"}     # 4 bytes overwritten on purpose


@pytest.mark.parametrize("compressed, twin", [
    pytest.param("MR_small_RLE.dcm", "MR_small.dcm", id="rle"),
    pytest.param("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", id="jpeg-ls-lossless"),
    pytest.param("MR_small_jp2klossless.dcm", "MR_small.dcm", id="jpeg-2000-lossless"),
    pytest.param("rtdose_rle_1frame.dcm", "rtdose_1frame.dcm", id="rle-dose"),
    pytest.param("rtdose_rle.dcm", "rtdose.dcm", id="rle-multiframe-first-frame"),
])
def test_lossless_dicom_decodes_to_the_pixels_of_its_uncompressed_twin(compressed, twin):
    assert np.array_equal(gray_of(bundled_dicom(compressed)), gray_of(bundled_dicom(twin)))


@pytest.mark.parametrize("name, shape", [
    pytest.param("JPGExtended.dcm", (1024, 256), id="jpeg-extended-12-bit"),
    pytest.param("SC_rgb_jpeg_gdcm.dcm", (100, 100), id="jpeg-lossless-process-14"),
    pytest.param("JPEGLSNearLossless_16.dcm", (50, 10), id="jpeg-ls-near-lossless-16-bit"),
    pytest.param("JPEG2000.dcm", (1024, 256), id="jpeg-2000"),
    pytest.param("SC_rgb_rle_2frame.dcm", (100, 100), id="rle-colour-two-frames"),
    pytest.param("examples_ybr_color.dcm", (240, 320), id="jpeg-ybr-colour-multiframe"),
])
def test_compressed_transfer_syntaxes_decode(name, shape):
    gray = gray_of(bundled_dicom(name))
    assert gray.shape == shape and gray.dtype == np.uint8 and gray.max() > gray.min()


def test_every_bundled_compressed_dicom_preprocesses_and_errors_are_one_line(cli, tmp_path):
    from conftest import write_jsonl
    from xrtools.preprocess import main as preprocess

    names = compressed_bundled_dicoms()
    if not names:
        pytest.skip("pydicom is not installed")
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": n, "path": bundled_dicom(n)} for n in names])
    result = cli(preprocess, manifest, "-o", tmp_path / "d.h5", "--size", "32")
    assert result.exit_code == 0, result.stderr
    errors = {r["id"]: r["error"] for r in result.records if "error" in r}
    assert sorted(errors) == sorted(CORRUPT) and len(names) >= 30
    for name, error in errors.items():
        assert "\n" not in error and CORRUPT[name] in error and error.startswith("unreadable DICOM (JPEG")
    assert all("\n" not in line for line in result.stderr.splitlines() if "unreadable" in line)


def test_a_multiframe_dicom_decodes_its_first_frame_only(tmp_path):
    frames = np.stack([np.array([[0, 1000], [2000, 4000]]), np.full((2, 2), 7), np.full((2, 2), 9)])
    first = gray_of(dicom_file(tmp_path / "one.dcm", frames[0]))
    assert gray_of(dicom_file(tmp_path / "three.dcm", frames)).tolist() == first.tolist()


@pytest.mark.parametrize("make, max_pixels, reason", [
    pytest.param(lambda p: bomb_png(p / "b.png", 30000, 30000), None, "30000x30000 is over --max-pixels 100000000",
                 id="30000-square-1-bit-png"),
    pytest.param(lambda p: bomb_png(p / "h.png", 30000, 20000, pixels=False), None,
                 "30000x20000 is over --max-pixels 100000000", id="refused-from-the-header-before-decoding"),
    pytest.param(lambda p: dicom_file(p / "b.dcm", np.zeros((2, 2)), claim=(20000, 30000)), None,
                 "30000x20000 is over --max-pixels 100000000", id="dicom-columns-by-rows"),
    pytest.param(lambda p: bomb_png(p / "s.png", 64, 48), 3000, "64x48 is over --max-pixels 3000", id="own-limit"),
])
def test_an_image_over_max_pixels_is_not_decoded(tmp_path, make, max_pixels, reason):
    path = make(tmp_path)
    with pytest.raises(DecodeError, match=f"^{reason}$"):
        load_gray(str(path), **({} if max_pixels is None else {"max_pixels": max_pixels}))


def test_max_pixels_above_pillows_own_limit_decodes(tmp_path):
    """Pillow refuses more than 178,956,970 pixels itself; --max-pixels is the one limit."""
    path = bomb_png(tmp_path / "b.png", 14000, 13000)
    image = load_gray(str(path), max_pixels=14000 * 13000)
    assert image.size == (14000, 13000) and image.getextrema() == (0, 0)


@pytest.fixture(scope="module")
def bombed(trained, tmp_path_factory):
    """The trained model's raw manifest, its first train record's image now a 30,000 x 30,000 PNG
    bomb; and a folder holding the bomb and a film, for xr-index."""
    tmp = tmp_path_factory.mktemp("bombed")
    (tmp / "ds" / "NORMAL").mkdir(parents=True)
    bomb = bomb_png(tmp / "ds" / "NORMAL" / "bomb.png", 30000, 30000)
    records = [json.loads(line) for line in trained["raw"].read_text().splitlines()]
    first = next(r for r in records if r["split"] == "train")
    film = shutil.copy(first["path"], tmp / "ds" / "NORMAL" / "film.png")
    first["path"] = str(bomb)
    width, height = Image.open(film).size
    return {"manifest": write_jsonl(tmp / "m.jsonl", records), "folder": tmp / "ds", "bomb": str(bomb),
            "film": str(film), "id": first["id"], "film_size": (width, height), "ckpt": trained["ckpt"]}


def _bomb_run(command, bombed, out):
    """(main, arguments) of ``command`` over the bombed records."""
    from xrtools.featmap import main as featmap
    from xrtools.index import main as index
    from xrtools.predict import main as predict
    from xrtools.preprocess import main as preprocess
    from xrtools.train import main as train

    manifest, ckpt = bombed["manifest"], bombed["ckpt"]
    return {
        "xr-index --check": (index, [bombed["folder"], "--check"]),
        "xr-preprocess": (preprocess, [manifest, "-o", out / "x.h5", "--size", 32, "--workers", 1]),
        "xr-preprocess --workers 2": (preprocess, [manifest, "-o", out / "x.h5", "--size", 32, "--workers", 2]),
        "xr-predict": (predict, ["-m", ckpt, manifest]),
        "xr-featmap": (featmap, ["-m", ckpt, bombed["bomb"], bombed["film"], "--cam", "--out-dir", out]),
        "xr-train": (train, [manifest, "--model", "cnn", "--epochs", 1, "--size", 32, "--run-dir", out / "run"]),
    }[command]


@pytest.mark.parametrize("below_a_film", [False, True], ids=["default-limit", "max-pixels-below-a-film"])
@pytest.mark.parametrize("command", ["xr-index --check", "xr-preprocess", "xr-preprocess --workers 2",
                                     "xr-predict", "xr-featmap", "xr-train"])
def test_an_image_over_max_pixels_is_unreadable_in_every_command(cli, bombed, tmp_path, command, below_a_film):
    """Recorded like any unreadable image, the run going on (xr-train: one line naming it, exit 1)."""
    width, height = bombed["film_size"]
    limit = width * height - 1 if below_a_film else 100_000_000
    main, args = _bomb_run(command, bombed, tmp_path)
    result = cli(main, *args, *(["--max-pixels", limit] if below_a_film else []), "-q")
    bomb = f"30000x30000 is over --max-pixels {limit}"
    film = f"{width}x{height} is over --max-pixels {limit}"
    if command.startswith("xr-preprocess") and below_a_film:       # no image at all is an error, no file
        assert result.exit_code == 1 and result.stdout == "" and not (tmp_path / "x.h5").exists()
        assert result.stderr == (f"xr-preprocess: error: {bombed['bomb']}: {bomb}: no image could be read "
                                 "(200 unreadable): nothing written\n")
        return
    if command == "xr-train":
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr == (f"xr-train: error: {bombed['bomb']}: {bomb}; record {bombed['id']!r} "
                                 "(xr-preprocess lists every unreadable image and leaves them out)\n")
        return
    if command == "xr-featmap":         # nothing at all to show is an error; some is a warning
        assert result.exit_code == below_a_film, result.stderr
        assert f"{1 + below_a_film} images could not be shown; the first: {bombed['bomb']}: {bomb}" in result.stderr
        assert ("cam-film.png" in result.stdout) != below_a_film
        assert (f"error: no image could be shown ({bombed['bomb']}:" in result.stderr) == below_a_film
        return
    assert result.exit_code == 0, result.stderr
    if command == "xr-index --check":
        assert f"unreadable: {bombed['bomb']}: {bomb}" in result.stderr
        assert (f"unreadable: {bombed['film']}: {film}" in result.stderr) == below_a_film
        return
    records = result.records
    assert len(records) == 200
    where = "" if command.startswith("xr-preprocess") else f"{bombed['bomb']}: "    # xr-predict names the file
    assert [r["error"] for r in records if r["path"] == bombed["bomb"]] == [where + bomb]
    others = [r for r in records if r["path"] != bombed["bomb"]]
    if below_a_film:
        assert all(r["error"].endswith(film) for r in others)
    else:
        assert not [r for r in others if "error" in r]


def _edited_dicom(path, edit):
    pydicom = pytest.importorskip("pydicom")
    dicom_file(path, np.arange(64 * 64).reshape(64, 64) % 4096)
    ds = pydicom.dcmread(str(path))
    edit(ds)
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


@pytest.mark.parametrize("edit, header", [
    pytest.param(lambda ds: setattr(ds, "RescaleSlope", ""), None, id="blank-rescale-slope"),
    pytest.param(lambda ds: setattr(ds, "Rows", [64, 64]), "unreadable DICOM: ", id="rows-twice"),
])
def test_a_dicom_whose_header_breaks_its_luts_or_size_is_unreadable_not_a_crash(tmp_path, edit, header):
    from libxr.pixels.files import header_problem

    path = _edited_dicom(tmp_path / "x.dcm", edit)
    with pytest.raises(DecodeError) as err:
        load_gray(path)
    assert str(err.value).startswith("unreadable DICOM") and "\n" not in str(err.value)
    problem = header_problem(path)       # xr-index --check reads the header only
    assert problem is None if header is None else problem.startswith(header)


def test_a_dicom_with_pixel_data_for_two_frames_but_one_declared_gives_its_first(tmp_path):
    one = np.asarray(load_gray(_edited_dicom(tmp_path / "one.dcm", lambda ds: None)))
    doubled = _edited_dicom(tmp_path / "two.dcm", lambda ds: setattr(ds, "PixelData", ds.PixelData * 2))
    assert np.array_equal(np.asarray(load_gray(doubled)), one)


def test_a_colour_dicom_becomes_luma_like_every_other_image(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import ExplicitVRLittleEndian

    bars = np.zeros((4, 4, 3), np.uint8)
    bars[0], bars[1], bars[2], bars[3] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
    ds = pydicom.dcmread(_edited_dicom(tmp_path / "rgb.dcm", lambda ds: None))
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 4, 4, 3, "RGB"
    ds.PlanarConfiguration, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 0, 8, 8, 7
    for tag in ("RescaleSlope", "RescaleIntercept"):
        delattr(ds, tag)
    ds.PixelData = bars.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(str(tmp_path / "rgb.dcm"), enforce_file_format=True)
    gray = np.asarray(load_gray(str(tmp_path / "rgb.dcm")))[:, 0]
    expected = np.array([0.299, 0.587, 0.114, 1.0]) * 255
    expected = (expected - expected.min()) / (expected.max() - expected.min()) * 255
    assert np.abs(gray.astype(float) - expected).max() <= 1          # red, green, blue apart, not one grey


@pytest.mark.parametrize("colour_type, samples", [(2, 3), (6, 4), (4, 2)], ids=["rgb", "rgba", "gray-alpha"])
def test_sixteen_bit_colour_pngs_are_stretched_like_sixteen_bit_gray(tmp_path, colour_type, samples):
    """Pillow keeps the high byte of 16-bit colour: a 12-bit film in it (100..4132) would be 0..16."""
    import struct
    import zlib

    height, width = 8, 8
    level = (np.linspace(100, 4132, height * width).reshape(height, width)).astype(">u2")
    pixels = np.repeat(level[..., None], samples, -1)
    if samples in (2, 4):
        pixels[..., -1] = 65535                         # opaque
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path = tmp_path / "deep.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    gray = np.asarray(load_gray(str(path)))
    assert gray.min() == 0 and gray.max() == 255          # the film's whole range, not near black
    assert np.all(np.diff(gray.ravel().astype(int)) >= 0)   # and in order
    assert 10 <= len(np.unique(gray)) <= 17               # but only the high byte's levels: Pillow drops the rest
    flat = np.repeat(np.full((height, width), 200, ">u2")[..., None], samples, -1)      # all below 256
    if samples in (2, 4):
        flat[..., -1] = 65535
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + flat[y].tobytes() for y in range(height))))
                     + chunk(b"IEND", b""))
    with pytest.raises(DecodeError, match="16-bit colour image whose high bytes are all one value"):
        load_gray(str(path))


def test_a_dicom_without_an_extension_is_indexed_and_decoded(cli, tmp_path):
    """PACS exports name files by their UIDs: the DICM preamble tells them, not an extension."""
    from xrtools.index import main as index
    from xrtools.preprocess import main as preprocess

    pixels = np.arange(64 * 64).reshape(64, 64) % 4096
    (tmp_path / "ds" / "A").mkdir(parents=True)
    dicom_file(tmp_path / "ds" / "A" / "1.2.840.113619", pixels)           # dots, but no image extension
    dicom_file(tmp_path / "ds" / "A" / "IM0001", pixels)
    (tmp_path / "ds" / "A" / "README").write_text("not an image")
    indexed = cli(index, tmp_path / "ds", "--check")
    assert indexed.exit_code == 0, indexed.stderr
    assert [r["id"] for r in indexed.records] == ["A/1.2.840.113619", "A/IM0001"]
    assert "file without extension" in indexed.stderr          # README: no DICOM, skipped and counted
    manifest = write_jsonl(tmp_path / "m.jsonl", [{**r, "split": "train"} for r in indexed.records])
    done = cli(preprocess, manifest, "-o", tmp_path / "d.h5", "--size", 32)
    assert done.exit_code == 0 and all("error" not in r for r in done.records), done.stderr
    assert np.asarray(load_gray(str(tmp_path / "ds" / "A" / "IM0001"))).max() == 255
    os.mkfifo(tmp_path / "ds" / "A" / "IM0002")                 # read for a preamble, a FIFO would block
    again = cli(index, tmp_path / "ds")
    assert again.exit_code == 0 and [r["id"] for r in again.records] == ["A/1.2.840.113619", "A/IM0001"]
