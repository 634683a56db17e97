"""libxr.pixels.datasets: batches from HDF5 (memory map, h5py, virtual) and from image files, strict or not."""

import json
import os
import re

import numpy as np
import pytest
from conftest import checked, write_jsonl
from PIL import Image
from xrtools.index import main as index
from xrtools.preprocess import main as preprocess
from xrtools.split import main as split
from xrtools.train import main as train

from libxr.errors import XRError
from libxr.learning.sampling import epoch_order
from libxr.pixels.datasets import H5Batches, RecordPixels, batches
from libxr.pixels.prepare import prepare_array

RAW = {"size": 24, "fit": "pad", "channels": ["gray"]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One synthetic dataset preprocessed three ways: contiguous, gzip, and merged shards."""
    from click.testing import CliRunner

    from libxr.synth import SynthOptions, synthesize

    tmp = tmp_path_factory.mktemp("loader")
    synthesize(str(tmp / "ds"), SynthOptions(count=50, size=40, seed=5))
    runner = CliRunner()
    manifest = tmp / "m.jsonl"
    manifest.write_text(runner.invoke(index, [str(tmp / "ds")]).stdout)
    out = {}
    for name, args in (("plain", []), ("gzip", ["--compression", "gzip"])):
        result = runner.invoke(preprocess, [str(manifest), "-o", str(tmp / f"{name}.h5"), "--size", "24", *args])
        out[name] = [json.loads(line) for line in result.stdout.splitlines()]
    parts = []
    for i in range(2):
        result = runner.invoke(preprocess, [str(manifest), "-o", str(tmp / f"p{i}.h5"), "--size", "24",
                                            "--shard", f"{i}/2"])
        parts.append(write_jsonl(tmp / f"p{i}.jsonl", [json.loads(line) for line in result.stdout.splitlines()]))
    merged = runner.invoke(preprocess, ["--merge", "-o", str(tmp / "merged.h5"), *map(str, parts)])
    out["merged"] = [json.loads(line) for line in merged.stdout.splitlines()]
    return out


@pytest.mark.parametrize("kind", ["plain", "gzip", "merged"])
def test_h5_batches_return_the_rows_asked_for(prepared, kind):
    records = prepared[kind]
    dataset = H5Batches(records[0]["h5"], [r["row"] for r in records], np.arange(len(records)))
    positions = [7, 3, 3, 40, 0]          # unordered, repeated
    pixels, targets, read, reasons = dataset[positions]
    assert read == positions and reasons == {}
    assert pixels.shape == (5, 1, 24, 24) and str(pixels.dtype) == "torch.uint8"
    assert targets.tolist() == positions
    for k, p in enumerate(positions):
        assert (pixels[k].numpy() == prepare_array(records[p]["path"], 24, "pad", ("gray",))).all()


def test_raw_images_equal_the_hdf5_rows(prepared):
    records = prepared["plain"]
    h5 = H5Batches(records[0]["h5"], [r["row"] for r in records], np.arange(len(records)))
    raw = RecordPixels([{k: v for k, v in r.items() if k not in ("h5", "row")} for r in records], RAW,
                       np.arange(len(records)), strict=True)
    mixed = RecordPixels(records, RAW, np.arange(len(records)))
    for dataset in (raw, mixed):
        batch = dataset[[1, 2, 9, 2]]
        assert (batch.pixels == h5[[1, 2, 9, 2]].pixels).all()
        assert batch.targets.tolist() == [1, 2, 9, 2] and batch.positions == [1, 2, 9, 2]


@pytest.fixture
def one_bad(tmp_path, prepared):
    (tmp_path / "x.png").write_text("nope")
    good = {k: v for k, v in prepared["plain"][0].items() if k not in ("h5", "row")}
    return [good, {"id": "x", "path": str(tmp_path / "x.png")}, {"id": "gone", "error": "unreadable earlier"}]


def test_strict_dataset_names_the_unreadable_file(one_bad):
    dataset = RecordPixels(one_bad, RAW, [0, 1, 0], strict=True)
    assert dataset[[0]].pixels.shape == (1, 1, 24, 24)
    with pytest.raises(XRError, match=r"x\.png: "):
        dataset[[0, 1]]


def test_lenient_dataset_leaves_unreadable_files_out_with_the_reason(one_bad):
    pixels, targets, read, reasons = RecordPixels(one_bad, RAW, [5, 6, 7])[[0, 1, 2]]
    assert read == [0] and targets.tolist() == [5] and pixels.shape == (1, 1, 24, 24)
    assert list(reasons) == [1] and reasons[1].startswith(one_bad[1]["path"] + ": ")


def test_opens_lazily_once_per_process(prepared):
    records = prepared["plain"]
    dataset = H5Batches(records[0]["h5"], [r["row"] for r in records], np.zeros(len(records)))
    assert dataset._pid is None
    dataset[[0]]
    assert dataset._pid == os.getpid()
    first = dataset._pixels
    dataset[[1]]
    assert dataset._pixels is first
    dataset._pid = -1                      # as seen from a forked worker: reopen
    dataset[[1]]
    assert dataset._pixels is not first


def test_loader_order_is_seeded_and_workers_change_nothing(prepared):
    records = prepared["plain"]
    dataset = H5Batches(records[0]["h5"], [r["row"] for r in records], np.arange(len(records)))

    def order(seed=0, epoch=0, workers=0):
        shuffled = epoch_order(range(len(dataset)), seed, epoch)
        return [b.targets.tolist() for b in batches(dataset, 8, shuffled, workers=workers)]

    a, b = order(seed=1), order(seed=1, workers=2)
    assert a == b and sorted(i for chunk in a for i in chunk) == list(range(len(records)))
    assert order(seed=2) != a and order(seed=1, epoch=1) != a
    assert next(b.targets.tolist() for b in batches(dataset, 8)) == list(range(8))
    assert all(len(b.targets) == 8
               for b in batches(dataset, 8, epoch_order(range(len(dataset)), 0, 0), drop_last=True))


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """420 films (32 px) split train/val by patient, and a truncated JPEG and PNG:
    (folder, records). More train records than the 256 that set a raw run's
    normalisation, so the loader is the first to read some of them."""
    from libxr.synth import SynthOptions, synthesize

    tmp = tmp_path_factory.mktemp("films")
    synthesize(str(tmp / "ds"), SynthOptions(count=420, size=32, splits=(), seed=7))
    raw = checked(split, "--val", "0.2", "--seed", "1",
                  input=checked(index, str(tmp / "ds"), "--patient-regex", r"person(\d+)_"))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8))
    for name in ("cut.jpg", "cut.png"):
        noise.save(tmp / name)
        data = (tmp / name).read_bytes()
        (tmp / name).write_bytes(data[: len(data) // 3])
    return tmp, [json.loads(line) for line in raw.splitlines()]


BATCH, STEPS = 16, 8


def _bad_record(records, where):
    """The record whose image to break: one the loader reads first in the first or a later batch
    of epoch 1 (seed 0; --batch-size BATCH --max-steps STEPS), one of the normalisation sample,
    or one in validation."""
    from libxr.learning.sampling import epoch_order

    if where == "val":
        val = [r for r in records if r["split"] == "val"]
        return val[len(val) // 2]
    train = [r for r in records if r["split"] == "train"]
    sampled = set(np.linspace(0, len(train) - 1, 256).astype(int).tolist())     # as libxr.learning.data
    assert len(train) > len(sampled)
    if where == "normalisation":
        return train[max(sampled)]
    order = epoch_order(range(len(train)), 0, 0)
    start = 0 if where == "first batch" else (STEPS // 2) * BATCH
    return train[next(i for i in order[start:STEPS * BATCH] if i not in sampled)]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name, where", [
    pytest.param("cut.jpg", "first batch", id="jpeg-first-batch"),
    pytest.param("cut.png", "first batch", id="png-first-batch"),
    pytest.param("cut.png", "later batch", id="png-later-batch"),
    pytest.param("cut.jpg", "later batch", id="jpeg-later-batch"),
    pytest.param("cut.jpg", "val", id="jpeg-val"),
    pytest.param("cut.png", "val", id="png-val"),
    pytest.param("cut.png", "normalisation", id="png-normalisation-sample"),
])
def test_raw_image_training_stops_at_a_truncated_image_naming_it(cli, films, tmp_path, name, where, workers):
    """One line naming the file and the record, exit 1, wherever the file is met and whatever the workers."""
    folder, records = films
    records = [dict(r) for r in records]
    bad = _bad_record(records, where)
    bad["path"] = str(folder / name)
    manifest = write_jsonl(tmp_path / "m.jsonl", records)
    result = cli(train, manifest, "--model", "cnn", "--epochs", 1, "--batch-size", BATCH, "--max-steps", STEPS,
                 "--size", 32, "--workers", workers, "--run-dir", tmp_path / "run", "-q")
    assert result.exit_code == 1 and result.stdout == "", result.stderr
    assert re.fullmatch(rf"xr-train: error: {re.escape(bad['path'])}: unreadable image: image file is truncated"
                        rf"[^\n]*; record {re.escape(repr(bad['id']))} \(xr-preprocess lists every unreadable "
                        r"image and leaves them out\)\n", result.stderr), result.stderr
