"""Shared fixtures: synthetic datasets, the real data beside the checkout, command runners."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

# Each pytest-xdist worker gets its share of the cores for torch's thread pool (and every command it
# starts, which inherits the variable): two workers each running two OpenMP threads on two cores
# spend half their time waiting on each other — the learning tests ran at half speed. Set before
# anything imports torch: OpenMP reads it when torch's library loads.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest
from click.testing import CliRunner

from libxr.synth import SynthOptions, synthesize

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
BIN = pathlib.Path(sys.executable).parent


def shared(*parts):
    """A path under ../shared/data; the test is skipped when it is absent (a user's checkout)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (real data lives beside the checkout, in ../shared)")
    return path


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="session")
def synth(synth_root):
    """``synth(layout, **options)``: a synthetic dataset, made once per session and options."""
    made = {}

    def make(layout="folders", **options):
        key = (layout, tuple(sorted(options.items())))
        if key not in made:
            options.setdefault("count", 60)
            options.setdefault("size", 32)
            name = options.pop("name", None) or f"{layout}-{len(made)}"
            out = synth_root / name
            synthesize(str(out), SynthOptions(layout=layout, **options))
            made[key] = out
        return made[key]

    return make


class Result:
    def __init__(self, code, stdout, stderr):
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def records(self):
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture
def cli():
    """``cli(main, *args, input=None)``: run a command in-process through click's CliRunner."""

    def run(main, *args, input=None):
        runner = CliRunner()
        result = runner.invoke(main, [str(a) for a in args], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    return run


def sh(command, cwd=None, input=None):
    """Run a shell pipeline with the installed commands first on PATH."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, input=input, timeout=300, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def needs_commands():
    if shutil.which("xr-index", path=str(BIN)) is None:
        pytest.skip("xr commands are not installed in this environment (make install)")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _chest_set(tmp, count, seed, *split_args):
    """Synthetic chest films (48 px), split by patient, preprocessed to 32 px: (HDF5, raw) manifests."""
    from xrtools.index import main as index
    from xrtools.preprocess import main as preprocess
    from xrtools.split import main as split

    synthesize(str(tmp / "ds"), SynthOptions(count=count, size=48, splits=(), seed=seed))
    raw = checked(index, str(tmp / "ds"), "--patient-regex", r"person(\d+)_")
    raw = checked(split, *split_args, "--seed", "1", input=raw)
    (tmp / "raw.jsonl").write_text(raw)
    h5 = checked(preprocess, "-o", str(tmp / "d.h5"), "--size", "32", input=raw)
    (tmp / "h5.jsonl").write_text(h5)
    return tmp / "h5.jsonl", tmp / "raw.jsonl"


def hdf5_consumers(checkpoint, manifest, tmp_path):
    """``[(command, click main, arguments)]``: every command that reads HDF5 rows, on ``manifest``
    (xr-train into ``tmp_path``/r, xr-featmap into ``tmp_path``/f)."""
    from xrtools.featmap import main as featmap
    from xrtools.predict import main as predict
    from xrtools.train import main as train

    return [("predict", predict, ["-m", checkpoint, manifest]),
            ("train", train, [manifest, "--model", "vgg5", "--epochs", "1", "--run-dir", tmp_path / "r"]),
            ("featmap", featmap, ["-m", checkpoint, manifest, "-n", "1", "--out-dir", tmp_path / "f"])]


def checked(main, *args, input=None):
    """A command's stdout; a non-zero exit raises with its stderr (a fixture must not build on a failure)."""
    result = CliRunner().invoke(main, list(args), input=input)
    if result.exit_code != 0:
        raise RuntimeError(f"{main.name} {' '.join(args)} exited {result.exit_code}: "
                           f"{result.stderr.strip() or repr(result.exception)}") from result.exception
    return result.stdout


@pytest.fixture(scope="session")
def manifests(tmp_path_factory):
    """160 films split train/val: (HDF5 manifest, raw manifest)."""
    return _chest_set(tmp_path_factory.mktemp("train"), 160, 2, "--val", "0.25")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A VGG-5 trained 3 epochs on 200 films split train/val/test:
    {"h5": manifest, "raw": manifest, "ckpt": best.pt, "dir": folder}."""
    from xrtools.train import main as train

    tmp = tmp_path_factory.mktemp("trained")
    h5, raw = _chest_set(tmp, 200, 3, "--val", "0.2", "--test", "0.3")
    checked(train, str(h5), "--model", "vgg5", "--epochs", "3", "--batch-size", "16",
            "--run-dir", str(tmp / "run"), "-q")
    return {"h5": h5, "raw": raw, "ckpt": tmp / "run" / "best.pt", "dir": tmp}


def bomb_png(path, width, height, pixels=True):
    """A 1-bit PNG of ``width`` x ``height`` black pixels, a decompression bomb: 30,000 x 30,000 is
    107 KB that decode to 900 MB. ``pixels=False``: the header only (no IDAT), so only a header
    check can describe it; decoding it fails."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = b""
    if pixels:
        row, packer = b"\0" * (1 + (width + 7) // 8), zlib.compressobj(9)
        data = chunk(b"IDAT", b"".join(packer.compress(row) for _ in range(height)) + packer.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + data + chunk(b"IEND", b""))
    return path


def dicom_file(path, pixels, photometric="MONOCHROME2", slope=1, intercept=0, window=None, claim=None):
    """A 12-bit DICOM of ``pixels`` (2-D, or frames x rows x columns). ``claim``: the (rows, columns)
    its header states instead, the pixel data unchanged (only a header check describes it)."""
    import numpy as np

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    if pixels.ndim == 3:
        ds.NumberOfFrames = len(pixels)
    ds.Rows, ds.Columns = claim or pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    assert pydicom.dcmread(str(path)).Rows == ds.Rows
    return path
