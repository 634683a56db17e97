"""libxr.pixels.h5store: the HDF5 file xr-preprocess writes — a Writer round trip (rows, labels, source
stats, failed rows dropped, statistics over the train split), the direct-write target, describe,
open_store's refusals, merging shards through a virtual dataset with classes and labels remapped, and
crafted files (libxr.pixels.h5layout) refused in one line by every command that reads them."""

import json
import os
import re
import shutil

import h5py
import numpy as np
import pytest
from conftest import hdf5_consumers, write_jsonl

from libxr import __version__
from libxr.errors import XRError
from libxr.pixels.h5store import (
    FORMAT,
    Stats,
    Writer,
    describe,
    histograms,
    label_matrix,
    merge,
    open_store,
    rows_digest,
)

SIZE = 4


def made_with(channels=1, **more):
    """The params attribute of a file of 4 px images with ``channels`` channels."""
    return {"size": SIZE, "channels": ["gray"] * channels, **more}


def image(level, channels=1):
    """A (C, 4, 4) image of one grey level."""
    return np.full((channels, SIZE, SIZE), level, np.uint8)


def train_hist(records, images, ok=None):
    """The summed histograms of the train-split images that decoded, as xr-preprocess gives them."""
    ok = [True] * len(records) if ok is None else ok
    chosen = [histograms(im) for r, im, good in zip(records, images, ok)
              if good and r.get("split") == "train"]
    return np.sum(chosen, 0) if chosen else None


def write(path, records, images, classes=(), label_names=(), params=None, ok=None, compression=None,
          batch=None):
    """A finished xr HDF5 file from records and their (C, H, W) images; ``batch``: records per add()."""
    ok = [True] * len(records) if ok is None else ok
    writer = Writer(str(path), len(records), images[0].shape[0], SIZE, classes, label_names, compression)
    rows = []
    batch = batch or len(records)
    for start in range(0, len(records), batch):
        part = slice(start, start + batch)
        rows += writer.add(records[part], ok[part], train_hist(records[part], images[part], ok[part]),
                           np.stack(images[part]))
    writer.finish(params or made_with(images[0].shape[0]), "sha-" + path.stem)
    return rows


def open_files():
    return h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


RECORDS = [{"id": "r0", "split": "train", "label": "NORMAL"},
           {"id": "r1", "split": "train", "label": "PNEUMONIA"},
           {"id": "r2", "split": "val", "label": "PNEUMONIA"},
           {"id": "r3", "label": "OTHER"},
           {"id": "r4", "split": "test", "label": None}]
IMAGES = [image(51 * i) for i in range(5)]        # levels 0, 0.2, 0.4, 0.6, 0.8


@pytest.mark.parametrize("compression, batch", [
    pytest.param(None, None, id="contiguous"),
    pytest.param("gzip", None, id="gzip"),
    pytest.param(None, 2, id="several-adds"),
])
def test_writer_round_trip(tmp_path, compression, batch):
    path = tmp_path / "x.h5"
    rows = write(path, RECORDS, IMAGES, ["NORMAL", "PNEUMONIA"], params=made_with(fit="pad"),
                 compression=compression, batch=batch)
    assert rows == [0, 1, 2, 3, 4]
    assert files_in(tmp_path) == ["x.h5"]                     # no temporary left
    with open_store(str(path)) as f:
        info = describe(f)
        assert info["params"] == made_with(fit="pad") and info["manifest_sha256"] == "sha-x"
        assert info["classes"] == ["NORMAL", "PNEUMONIA"] and info["label_names"] == [] and info["count"] == 5
        # train split only: levels 0 and 0.2 -> mean 0.1, std 0.1
        assert info["mean"].tolist() == pytest.approx([0.1]) and info["std"].tolist() == pytest.approx([0.1])
        assert f["images"].shape == (5, 1, SIZE, SIZE) and f["images"].dtype == np.uint8
        assert np.array_equal(f["images"][:], np.stack(IMAGES))
        assert f["ids"].asstr()[:].tolist() == ["r0", "r1", "r2", "r3", "r4"]
        assert f["split"].asstr()[:].tolist() == ["train", "train", "val", "", "test"]
        assert f["label"][:].tolist() == [0, 1, 1, -1, -1]        # an unknown class and no label: -1
        assert "labels" not in f
        assert f.attrs["format"] == FORMAT == "xr-hdf5/2" and f.attrs["complete"]
        assert f.attrs["xr_version"] == __version__ and f.attrs["stats_over"] == "train"
        assert f.attrs["stats_pixels"] == 2 * SIZE * SIZE
        assert (f["images"].compression, f["images"].chunks) == (
            ("gzip", (1, 1, SIZE, SIZE)) if compression else (None, None))


def test_source_sizes_and_mtimes_are_stored_per_row_and_digested(tmp_path):
    path = tmp_path / "x.h5"
    writer = Writer(str(path), 3, 1, SIZE)
    writer.add(RECORDS[:2], [True, False], None, np.stack(IMAGES[:2]), [(10, 1000), (20, 2000)])
    writer.add(RECORDS[2:3], [True], None, np.stack(IMAGES[2:3]), [(30, 3000)])
    writer.finish(made_with(), "sha")
    with open_store(str(path)) as f:
        assert f["source_size"][:].tolist() == [10, 30] and f["source_mtime_ns"][:].tolist() == [1000, 3000]
        assert f.attrs["rows_sha256"] == rows_digest(["r0", "r2"], [10, 30], [1000, 3000])
    assert rows_digest(["r0", "r2"], [10, 30], [1000, 3001]) != rows_digest(["r0", "r2"], [10, 30], [1000, 3000])
    assert rows_digest(["r0", "r1"], [10, 30], [1000, 3000]) != rows_digest(["r0", "r2"], [10, 30], [1000, 3000])


def test_nothing_at_the_path_until_finish(tmp_path):
    path = tmp_path / "x.h5"
    writer = Writer(str(path), 2, 1, SIZE, ["a", "b"])
    writer.add(RECORDS[:2], [True, True], None, np.stack(IMAGES[:2]))
    names = files_in(tmp_path)
    assert len(names) == 1 and re.fullmatch(r"\.x\.h5\..+\.part", names[0])
    writer.finish(made_with(), "sha")
    assert files_in(tmp_path) == ["x.h5"]


def test_abort_leaves_nothing(tmp_path):
    writer = Writer(str(tmp_path / "x.h5"), 3, 1, SIZE)
    writer.add(RECORDS[:1], [True], None, np.stack(IMAGES[:1]))
    writer.abort()
    assert files_in(tmp_path) == []


def test_no_records_to_write(tmp_path):
    with pytest.raises(XRError, match="^no records to preprocess$"):
        Writer(str(tmp_path / "x.h5"), 0, 1, SIZE)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_failed_rows_are_dropped(tmp_path, compression):
    path = tmp_path / "x.h5"
    ok = [True, False, True, False, True]
    rows = write(path, RECORDS, IMAGES, ["NORMAL", "PNEUMONIA"], ok=ok, compression=compression, batch=2)
    assert rows == [0, None, 1, None, 2]
    assert files_in(tmp_path) == ["x.h5"]
    with open_store(str(path)) as f:
        assert describe(f)["count"] == 3 and f["images"].shape[0] == 3
        assert f["ids"].asstr()[:].tolist() == ["r0", "r2", "r4"]
        assert f["split"].asstr()[:].tolist() == ["train", "val", "test"]
        assert f["label"][:].tolist() == [0, 1, -1]
        assert np.array_equal(f["images"][:], np.stack([IMAGES[0], IMAGES[2], IMAGES[4]]))
        # the train split is r0 alone now (r1 failed): level 0
        assert describe(f)["mean"].tolist() == [0.0] and describe(f)["std"].tolist() == [0.0]


def test_many_flushes_keep_rows_in_order(tmp_path):
    path = tmp_path / "x.h5"
    records = [{"id": f"r{i}", "split": "train" if i % 3 else "val", "label": "ab"[i % 2]} for i in range(11)]
    images = [image(i) for i in range(11)]
    writer = Writer(str(path), 11, 1, SIZE, ["a", "b"])
    writer.FLUSH = 2
    for i in range(0, 11, 3):
        writer.add(records[i:i + 3], [True] * len(records[i:i + 3]), None, np.stack(images[i:i + 3]))
    # written as they came, not all at the end
    assert writer.ids.asstr()[:].tolist() == [r["id"] for r in records]
    writer.finish(made_with(), "sha")
    with open_store(str(path)) as f:
        assert f["ids"].asstr()[:].tolist() == [r["id"] for r in records]
        assert f["split"].asstr()[:].tolist() == [r["split"] for r in records]
        assert f["label"][:].tolist() == [i % 2 for i in range(11)]
        assert f["images"][:, 0, 0, 0].tolist() == list(range(11))


def test_without_a_train_split_the_statistics_cover_every_good_image(tmp_path):
    path = tmp_path / "x.h5"
    records = [{"id": f"r{i}", "split": "test"} for i in range(3)]
    write(path, records, [image(0), image(128), image(255)], ok=[True, False, True])
    with open_store(str(path)) as f:
        info = describe(f)
        # levels 0 and 1, not the failed image's
        assert info["mean"].tolist() == [0.5] and info["std"].tolist() == [0.5]
        assert f.attrs["stats_over"] == "all" and "label" not in f and "labels" not in f


def test_per_channel_statistics(tmp_path):
    path = tmp_path / "x.h5"
    a = np.stack([np.full((SIZE, SIZE), 255, np.uint8), np.zeros((SIZE, SIZE), np.uint8)])
    b = np.stack([np.full((SIZE, SIZE), 255, np.uint8), np.full((SIZE, SIZE), 255, np.uint8)])
    write(path, [{"id": "a", "split": "train"}, {"id": "b", "split": "train"}], [a, b])
    with open_store(str(path)) as f:
        info = describe(f)
    assert info["mean"].tolist() == [1.0, 0.5] and info["std"].tolist() == [0.0, 0.5]


def test_multilabel_rows(tmp_path):
    path = tmp_path / "x.h5"
    records = [{"id": "a", "labels": {"Edema": 1, "Effusion": -1}}, {"id": "b", "labels": {"Edema": 0}},
               {"id": "c"}, {"id": "d", "labels": {"Effusion": 1, "Mass": 1}}]
    write(path, records, [image(0)] * 4, label_names=["Edema", "Effusion"])
    with open_store(str(path)) as f:
        assert describe(f)["label_names"] == ["Edema", "Effusion"] and describe(f)["classes"] == []
        assert "label" not in f
        np.testing.assert_array_equal(f["labels"][:], [[1, -1], [0, np.nan], [np.nan, np.nan], [np.nan, 1]])


def test_label_matrix():
    got = label_matrix([{"labels": {"b": 1, "a": 0}}, {"labels": {"a": -1, "b": None}}, {}], ["a", "b"])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [[0, 1], [-1, np.nan], [np.nan, np.nan]])


def test_direct_writes_through_the_target(tmp_path):
    """Workers write pixels straight into the temporary file at the offset target() gives."""
    path = tmp_path / "x.h5"
    images = [image(10 * i, 2) for i in range(3)]
    writer = Writer(str(path), 3, 2, SIZE, ["a", "b"])
    tmp, offset, per_row = writer.target()
    assert per_row == 2 * SIZE * SIZE and os.path.dirname(tmp) == str(tmp_path)
    with open(tmp, "r+b") as raw:
        for row, im in enumerate(images):
            raw.seek(offset + row * per_row)
            raw.write(im.tobytes())
    records = [{"id": f"r{i}", "split": "train", "label": "a"} for i in range(3)]
    assert writer.add(records, [True] * 3, train_hist(records, images)) == [0, 1, 2]
    writer.finish(made_with(2), "sha")
    with open_store(str(path)) as f:
        assert np.array_equal(f["images"][:], np.stack(images))
        assert describe(f)["mean"].tolist() == pytest.approx([10 / 255, 10 / 255])
    assert Writer(str(tmp_path / "y.h5"), 1, 1, SIZE, compression="gzip").target() is None


def test_histograms_and_stats_by_hand():
    im = np.array([[[0, 255], [255, 255]], [[1, 1], [1, 1]]], np.uint8)
    h = histograms(im)
    assert h.shape == (2, 256) and (h[0, 0], h[0, 255], h[1, 1]) == (1, 3, 4) and h.sum() == 8
    stats = Stats(2)
    stats.add(im)
    mean, std = stats.mean_std()
    assert stats.pixels == 4
    assert mean.tolist() == pytest.approx([0.75, 1 / 255])
    assert std.tolist() == pytest.approx([np.sqrt(0.75 * 0.25), 0])
    other = Stats(2)
    other.add(np.zeros((2, 2, 2), np.uint8))
    stats.merge(other.sum, other.sumsq, other.pixels)
    assert stats.pixels == 8 and stats.mean_std()[0].tolist() == pytest.approx([0.375, 0.5 / 255])
    assert np.isnan(Stats(3).mean_std()[0]).all() and Stats(3).mean_std()[1].shape == (3,)


# ---------------------------------------------------------------- open_store's refusals

def test_open_store_refuses_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "x.h5"
    path.write_text("id,path\n")
    with pytest.raises(XRError, match=f"^{re.escape(str(path))}: not a readable HDF5 file \\(.+\\)$"):
        open_store(str(path))


def test_open_store_refuses_a_missing_file(tmp_path):
    path = tmp_path / "missing.h5"
    with pytest.raises(XRError, match=f"^{re.escape(str(path))}: not a readable HDF5 file \\(.+\\)$"):
        open_store(str(path))


INCOMPLETE = "not a complete xr-preprocess file"


@pytest.mark.parametrize("attrs, message", [
    pytest.param({}, INCOMPLETE, id="no-attributes"),
    pytest.param({"format": FORMAT}, INCOMPLETE, id="not-complete"),
    pytest.param({"format": FORMAT, "complete": False}, INCOMPLETE, id="complete-false"),
    pytest.param({"format": "xr-hdf5/0", "complete": False}, INCOMPLETE, id="other-format-incomplete"),
    pytest.param({"format": "xr-hdf5/1", "complete": True},
                 "written in format xr-hdf5/1; this xr reads xr-hdf5/2: run xr-preprocess again", id="older-format"),
])
def test_open_store_refuses_an_incomplete_or_foreign_file(tmp_path, attrs, message):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
    before = open_files()
    with pytest.raises(XRError, match=f"^{re.escape(str(path))}: {re.escape(message)}$") as info:
        open_store(str(path))
    assert open_files() == before and info.traceback    # closed, though the traceback holds its frame


# ---------------------------------------------------------------- merge

def shard_a(folder):
    records = [{"id": "a0", "split": "train", "label": "A"}, {"id": "a1", "split": "val", "label": "B"},
               {"id": "a2", "split": "train"}]
    write(folder / "a.h5", records, [image(0), image(10), image(51)], ["A", "B"],
          params=made_with(shard=[0, 2]))
    return str(folder / "a.h5")


def shard_b(folder, params=None):
    records = [{"id": "b0", "split": "train", "label": "C"}, {"id": "b1", "split": "train", "label": "B"}]
    write(folder / "b.h5", records, [image(102), image(255)], ["B", "C"],
          params=params or made_with(shard=[1, 2]))
    return str(folder / "b.h5")


def test_merge_joins_shards_and_remaps_classes(tmp_path):
    (tmp_path / "parts").mkdir()
    a, b = shard_a(tmp_path / "parts"), shard_b(tmp_path / "parts")
    out = tmp_path / "data.h5"
    assert merge([a, b], str(out), "sha-all") == {a: 0, b: 3}
    assert files_in(tmp_path) == ["data.h5", "parts"]
    with open_store(str(out)) as f:
        info = describe(f)
        assert info["params"] == made_with() and info["count"] == 5
        assert info["manifest_sha256"] == "sha-all"
        assert info["classes"] == ["A", "B", "C"] and info["label_names"] == []
        assert f["images"].is_virtual
        assert f["images"][:, 0, 0, 0].tolist() == [0, 10, 51, 102, 255]
        assert f["ids"].asstr()[:].tolist() == ["a0", "a1", "a2", "b0", "b1"]
        assert f["split"].asstr()[:].tolist() == ["train", "val", "train", "train", "train"]
        # A's 0, 1 (A, B) stay; B's 0, 1 (B, C) become 1, 2; no label stays -1
        assert f["label"][:].tolist() == [0, 1, -1, 2, 1]
        recorded = json.loads(f.attrs["shards"])
        assert [(s["file"], s["rows"]) for s in recorded] == [("parts/a.h5", 3), ("parts/b.h5", 2)]
        for shard in recorded:
            with h5py.File(tmp_path / shard["file"]) as part:
                assert shard["rows_sha256"] == part.attrs["rows_sha256"]
        assert f.attrs["stats_over"] == "train"
        # train images: levels 0, 0.2 (shard a), 0.4, 1 (shard b)
        levels = np.array([0, 51, 102, 255]) / 255
        assert info["mean"].tolist() == pytest.approx([levels.mean()])
        assert info["std"].tolist() == pytest.approx([levels.std()])


def test_a_merged_file_finds_its_shards_after_moving(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    (folder / "parts").mkdir(parents=True)
    merge([shard_a(folder / "parts"), shard_b(folder / "parts")], str(folder / "data.h5"), "sha")
    shutil.move(folder, tmp_path / "moved")
    monkeypatch.chdir(tmp_path)                     # neither the merged file's folder nor the shards'
    with open_store(str(tmp_path / "moved" / "data.h5")) as f:
        assert f["images"][:, 0, 0, 0].tolist() == [0, 10, 51, 102, 255]


def test_merge_remaps_labels_and_mixes_single_and_multi_label_shards(tmp_path):
    a = tmp_path / "a.h5"
    write(a, [{"id": "a0", "labels": {"Edema": 1}}, {"id": "a1", "labels": {"Edema": 0}}], [image(0)] * 2,
          label_names=["Edema"])
    b = tmp_path / "b.h5"
    write(b, [{"id": "b0", "labels": {"Edema": 1, "Effusion": 0}}, {"id": "b1", "labels": {"Effusion": 1}}],
          [image(0)] * 2, label_names=["Effusion", "Edema"])
    c = tmp_path / "c.h5"
    write(c, [{"id": "c0", "label": "x"}], [image(0)], ["x"])
    merge([str(a), str(b), str(c)], str(tmp_path / "m.h5"), "sha")
    with open_store(str(tmp_path / "m.h5")) as f:
        info = describe(f)
        assert info["label_names"] == ["Edema", "Effusion"] and info["classes"] == ["x"]
        np.testing.assert_array_equal(f["labels"][:], [[1, np.nan], [0, np.nan], [1, 0], [np.nan, 1],
                                                       [np.nan, np.nan]])
        assert f["label"][:].tolist() == [-1, -1, -1, -1, 0]


def test_merge_names_how_the_statistics_were_taken(tmp_path):
    a = shard_a(tmp_path)
    c = tmp_path / "c.h5"
    write(c, [{"id": "c0", "split": "test", "label": "A"}], [image(255)], ["A"],
          params=made_with(shard=[1, 2]))
    merge([a, str(c)], str(tmp_path / "m.h5"), "sha")
    with open_store(str(tmp_path / "m.h5")) as f:
        assert f.attrs["stats_over"] == "all+train"


def test_merge_refuses_shards_preprocessed_differently(tmp_path):
    a, b = shard_a(tmp_path), shard_b(tmp_path, made_with(fit="crop", shard=[1, 2]))
    message = f"{b}: preprocessed with other parameters than {a}"
    with pytest.raises(XRError, match=f"^{re.escape(message)}$"):
        merge([a, b], str(tmp_path / "m.h5"), "sha")
    assert files_in(tmp_path) == ["a.h5", "b.h5"]


def test_a_merge_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    a, b = shard_a(tmp_path), shard_b(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_virtual_dataset", boom)
    before = open_files()
    with pytest.raises(OSError, match="disk full") as info:
        merge([a, b], str(tmp_path / "m.h5"), "sha")
    assert files_in(tmp_path) == ["a.h5", "b.h5"]
    assert open_files() == before and info.traceback    # the shards are closed again


def test_merge_refuses_a_shard_that_is_not_an_xr_file(tmp_path):
    a = shard_a(tmp_path)
    (tmp_path / "b.h5").write_text("not hdf5")
    with pytest.raises(XRError, match=f"^{re.escape(str(tmp_path / 'b.h5'))}: not a readable HDF5 file"):
        merge([a, str(tmp_path / "b.h5")], str(tmp_path / "m.h5"), "sha")
    assert files_in(tmp_path) == ["a.h5", "b.h5"]


# ---------------------------------------------------------------- crafted files, in every consumer

GROUP = object()


@pytest.mark.parametrize("name, value, message", [   # `name` becomes `value` (None: removed; "@": an attribute)
    pytest.param("images", None, "no 'images' dataset", id="no-images"),
    pytest.param("images", np.uint8(3), "'images' is uint8 (), not uint8 (200, 1, 32, 32) (as its `count` and "
                 "`params` say)", id="scalar-images"),
    pytest.param("images", np.zeros((200, 3, 32, 32), np.uint8),
                 "'images' is uint8 (200, 3, 32, 32), not uint8 (200, 1, 32, 32)", id="three-channels"),
    pytest.param("images", np.zeros((200, 1, 32, 32), np.float32),
                 "'images' is float32 (200, 1, 32, 32), not uint8 (200, 1, 32, 32)", id="float-images"),
    pytest.param("images", h5py.SoftLink("/split"), "'images' is a soft link to /split, not a dataset of its own",
                 id="soft-link"),
    pytest.param("images", h5py.ExternalLink("other.h5", "images"),
                 "'images' is an external link to other.h5:images, not a dataset of its own", id="external-link"),
    pytest.param("images", GROUP, "'images' is a group, not a dataset", id="group-for-images"),
    pytest.param("ids", np.array([b"x"] * 195), "'ids' is str (195,), not str (200,)", id="short-ids"),
    pytest.param("@params", "{size: 32", "attribute 'params' is not JSON with a size and channels, as "
                 "xr-preprocess writes it", id="params-not-json"),
])
def test_a_crafted_file_is_refused_in_one_line_by_every_consumer(cli, trained, tmp_path, name, value, message):
    """A file laid out otherwise than xr-preprocess writes it: before, a traceback or — for an
    external link or another dtype — wrong pixels read at the memory-mapped offset, with exit 0."""
    crafted = tmp_path / "crafted.h5"
    shutil.copy(trained["dir"] / "d.h5", crafted)
    shutil.copy(trained["dir"] / "d.h5", tmp_path / "other.h5")      # what the external link points at
    with h5py.File(crafted, "r+") as f:
        if name.startswith("@"):
            f.attrs[name[1:]] = value
        else:
            del f[name]
            if value is GROUP:
                f.create_group(name)
            elif value is not None:
                f[name] = value
    manifest = write_jsonl(tmp_path / "m.jsonl", [{**json.loads(line), "h5": str(crafted)}
                                                  for line in trained["h5"].read_text().splitlines()])
    for command, entry, args in hdf5_consumers(trained["ckpt"], manifest, tmp_path):
        result = cli(entry, *args, "-q")
        assert result.exit_code == 1 and result.stdout == "", result.stderr
        assert result.stderr.startswith(f"xr-{command}: error: {crafted}: {message}") and \
            result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "r").exists()
