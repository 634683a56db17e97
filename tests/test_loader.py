"""libxr.loader: batches from HDF5 (memory map, h5py, virtual) and from image files."""

import json
import os

import numpy as np
import pytest
from conftest import write_jsonl
from xrtools.index import main as index
from xrtools.preprocess import main as preprocess

from libxr.loader import H5Batches, ImageBatches, batches
from libxr.preprocess import prepare_array
from libxr.sampling import epoch_order


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
    pixels, targets = dataset[positions]
    assert pixels.shape == (5, 1, 24, 24) and str(pixels.dtype) == "torch.uint8"
    assert targets.tolist() == positions
    for k, p in enumerate(positions):
        assert (pixels[k].numpy() == prepare_array(records[p]["path"], 24, "pad", ("gray",))).all()


def test_image_batches_equal_the_hdf5_rows(prepared):
    records = prepared["plain"]
    h5 = H5Batches(records[0]["h5"], [r["row"] for r in records], np.zeros(len(records)))
    raw = ImageBatches([r["path"] for r in records], np.zeros(len(records)), size=24)
    assert (h5[[1, 2, 9]][0] == raw[[1, 2, 9]][0]).all()


def test_unreadable_image_names_the_file(tmp_path):
    from libxr.errors import XRError

    (tmp_path / "x.png").write_text("nope")
    with pytest.raises(XRError, match="x.png"):
        ImageBatches([str(tmp_path / "x.png")], [0], size=8)[[0]]


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
        return [t.tolist() for _, t in batches(dataset, 8, shuffled, workers=workers)]

    a, b = order(seed=1), order(seed=1, workers=2)
    assert a == b and sorted(i for chunk in a for i in chunk) == list(range(len(records)))
    assert order(seed=2) != a and order(seed=1, epoch=1) != a
    assert next(t.tolist() for _, t in batches(dataset, 8)) == list(range(8))
    assert all(len(t) == 8 for _, t in batches(dataset, 8, epoch_order(range(len(dataset)), 0, 0), drop_last=True))
