"""The npz layout: MedMNIST(+) arrays indexed by writing each image once as a PNG file."""

import json

import numpy as np
import pytest
from PIL import Image
from xrtools.index import main as index

from libxr.index import npz
from libxr.index.nih import FINDINGS

SPLITS = {"train": 5, "val": 2, "test": 3}


def medmnist(path, size=28, labels=1, classes=2, colour=False, save=np.savez_compressed, order="C", seed=0):
    """A MedMNIST-style file: {split}_images (N×H×W[×3] uint8) and {split}_labels (N×labels)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SPLITS.items():
        shape = (n, size, size, 3) if colour else (n, size, size)
        arrays[f"{split}_images"] = np.asarray(rng.integers(0, 256, shape, np.uint8), order=order)
        high = 2 if labels > 1 else classes
        arrays[f"{split}_labels"] = rng.integers(0, high, (n, labels)).astype(np.uint8)
    save(path, **arrays)
    return arrays


@pytest.mark.parametrize("name, options, names, kind", [
    pytest.param("pneumoniamnist.npz", {}, ["normal", "pneumonia"], "label", id="pneumoniamnist-28-binary"),
    pytest.param("chestmnist_64.npz", {"size": 64, "labels": 14}, list(FINDINGS), "labels",
                 id="chestmnist-64-14-labels"),
    pytest.param("organamnist_128.npz", {"size": 128, "classes": 11}, [str(i) for i in range(11)], "label",
                 id="multiclass-128-named-by-numbers"),
    pytest.param("bloodmnist_224.npz", {"size": 224, "classes": 8, "colour": True, "save": np.savez},
                 [str(i) for i in range(8)], "label", id="colour-224-uncompressed"),
    pytest.param("pneumoniamnist_64.npz", {"size": 64, "order": "F"}, ["normal", "pneumonia"], "label",
                 id="fortran-ordered-arrays"),
])
def test_medmnist_files_index_with_splits_labels_and_pixels(cli, tmp_path, name, options, names, kind):
    arrays = medmnist(tmp_path / name, **options)
    result = cli(index, tmp_path / name, "--extract", tmp_path / "png")
    assert result.exit_code == 0, result.stderr
    records = result.records
    assert [r["split"] for r in records] == [s for s, n in SPLITS.items() for _ in range(n)]
    assert records[6] == {"id": "val/000001.png", "path": str(tmp_path / "png" / "val" / "000001.png"),
                          kind: records[6][kind], "split": "val",
                          "source": {"npz": name, "array": "val_images", "index": 1}}
    for rec in records:
        split, row = rec["source"]["array"][:-7], rec["source"]["index"]
        assert np.array_equal(np.asarray(Image.open(rec["path"])), arrays[f"{split}_images"][row])
        truth = arrays[f"{split}_labels"][row]
        if kind == "label":
            assert rec["label"] == names[truth[0]]
        else:
            assert rec["labels"] == {n: int(v) for n, v in zip(names, truth)}
    named_by_number = names[0] == "0"
    assert ("label names unknown for this file" in result.stderr) == named_by_number


def test_streamed_in_small_chunks(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(npz, "_CHUNK", 1000)          # a chunk holds one 28 px image at a time
    arrays = medmnist(tmp_path / "pneumoniamnist.npz")
    records = cli(index, tmp_path / "pneumoniamnist.npz", "--extract", tmp_path / "png").records
    assert all(np.array_equal(np.asarray(Image.open(r["path"])), arrays[r["source"]["array"]][r["source"]["index"]])
               for r in records)


def test_each_image_is_written_once_and_a_rerun_rewrites_nothing(cli, tmp_path):
    medmnist(tmp_path / "pneumoniamnist.npz")
    first = cli(index, tmp_path / "pneumoniamnist.npz", "--extract", tmp_path / "png")
    files = sorted((tmp_path / "png").rglob("*"))
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files if p.is_file()}
    assert len(stamps) == 10 and not [p for p in files if p.name.startswith(".")]    # no temporaries left
    again = cli(index, tmp_path / "pneumoniamnist.npz", "--extract", tmp_path / "png")
    assert again.stdout == first.stdout
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in stamps} == stamps
    (tmp_path / "png" / "train" / "000000.png").write_bytes(b"something else")
    cli(index, tmp_path / "pneumoniamnist.npz", "--extract", tmp_path / "png")
    assert Image.open(tmp_path / "png" / "train" / "000000.png").size == (28, 28)


def test_extracted_records_preprocess_unchanged(cli, tmp_path):
    from xrtools.preprocess import main as preprocess

    medmnist(tmp_path / "chestmnist.npz", labels=14)
    manifest = cli(index, tmp_path / "chestmnist.npz", "--extract", tmp_path / "png").stdout
    result = cli(preprocess, "-o", tmp_path / "d.h5", "--size", "28", input=manifest)
    assert result.exit_code == 0, result.stderr
    assert [r["row"] for r in result.records] == list(range(10))
    assert all(set(r["labels"]) == set(FINDINGS) for r in result.records)


def test_without_extract_it_is_a_usage_error_saying_what_to_pass(cli, tmp_path):
    medmnist(tmp_path / "pneumoniamnist.npz")
    result = cli(index, tmp_path / "pneumoniamnist.npz")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"xr-index: error: {tmp_path / 'pneumoniamnist.npz'} holds pixel arrays, not "
                                     "image files: pass --extract DIR to write them once as PNG files the records "
                                     "point at")
    other = tmp_path / "t.csv"
    other.write_text("path,label\n")
    assert cli(index, other, "--extract", tmp_path / "png").exit_code == 2


@pytest.mark.parametrize("arrays, message", [
    pytest.param({"x": np.zeros(3)}, "no train_images/val_images/test_images arrays (MedMNIST layout); it holds x",
                 id="not-medmnist"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.uint8)}, "train_images has no train_labels array",
                 id="no-labels"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.zeros((3, 1), np.uint8)},
                 "train_images has 2 images, the labels 3", id="counts-differ"),
    pytest.param({"train_images": np.zeros((2, 4, 4, 4), np.uint8), "train_labels": np.zeros((2, 1), np.uint8)},
                 "train_images is uint8 (2, 4, 4, 4): expected N×H×W 8- or 16-bit or N×H×W×3 8-bit images "
                 "(3-D volumes are not supported)", id="3d-volumes"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.float32), "train_labels": np.zeros((2, 1), np.uint8)},
                 "train_images is float32 (2, 4, 4)", id="float-pixels"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.full((2, 1), 0.5)},
                 "train_labels is float64 (2, 1): expected integers", id="float-labels"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array([[0, 1], [2, 0]])},
                 "train_labels[1]: label value 2 is not 1, 0 or -1", id="multilabel-value-2"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.zeros((2, 1), np.uint8),
                  "val_images": np.zeros((2, 4, 4), np.uint8), "val_labels": np.zeros((1, 1), np.uint8)},
                 "val_images has 2 images, the labels 1", id="a-later-split-differs"),
    pytest.param({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.zeros((2, 1), np.uint8),
                  "test_images": np.zeros((1, 4, 4), np.uint8), "test_labels": np.array([[-1]])},
                 "test_labels[0]: class -1 is not one of 0..0", id="a-later-split-bad-label"),
])
def test_arrays_that_are_not_medmnist_are_one_line_errors(cli, tmp_path, arrays, message):
    np.savez(tmp_path / "data.npz", **arrays)
    result = cli(index, tmp_path / "data.npz", "--extract", tmp_path / "png")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith(f"xr-index: error: {tmp_path / 'data.npz'}")
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "png").exists()          # checked before any image is extracted


def test_a_corrupt_member_is_a_one_line_error(cli, tmp_path):
    medmnist(tmp_path / "pneumoniamnist.npz", size=64)
    data = bytearray((tmp_path / "pneumoniamnist.npz").read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = bytes(64)         # inside the compressed train images
    (tmp_path / "pneumoniamnist.npz").write_bytes(bytes(data))
    result = cli(index, tmp_path / "pneumoniamnist.npz", "--extract", tmp_path / "png")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"xr-index: error: {tmp_path / 'pneumoniamnist.npz'}: train_images: ")


def test_a_class_number_past_a_known_sets_classes_is_an_error_at_its_row(cli, tmp_path):
    """PneumoniaMNIST has two classes: a 7 (here only in test) is a bad row, not a reason to name
    every split's classes by number."""
    np.savez(tmp_path / "pneumoniamnist.npz", train_images=np.zeros((2, 4, 4), np.uint8),
             train_labels=np.array([[0], [1]]), test_images=np.zeros((1, 4, 4), np.uint8), test_labels=np.array([[7]]))
    result = cli(index, tmp_path / "pneumoniamnist.npz", "--extract", tmp_path / "png")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().endswith(f"{tmp_path / 'pneumoniamnist.npz'}:test_labels[0]: class 7 is not one "
                                          "of 0..1")


def test_label_names_of_an_unknown_set_are_numbers_in_every_split(cli, tmp_path):
    np.savez(tmp_path / "mine.npz", train_images=np.zeros((2, 4, 4), np.uint8),
             train_labels=np.array([[0], [1]]), test_images=np.zeros((1, 4, 4), np.uint8), test_labels=np.array([[7]]))
    result = cli(index, tmp_path / "mine.npz", "--extract", tmp_path / "png")
    assert result.exit_code == 0 and "labels are named by their numbers 0..7" in result.stderr
    assert [r["label"] for r in result.records] == ["0", "1", "7"]


def test_arrays_that_are_no_split_are_counted_and_fail_strict(cli, tmp_path):
    np.savez(tmp_path / "pneumoniamnist_28.npz", train_images=np.zeros((2, 4, 4), np.uint8),
             train_labels=np.array([[0], [1]]), val_labels=np.array([[0]]), test_imgs=np.zeros((1, 4, 4), np.uint8),
             test_labels=np.array([[1]]))
    result = cli(index, tmp_path / "pneumoniamnist_28.npz", "--extract", tmp_path / "png")
    assert result.exit_code == 0 and len(result.records) == 2
    assert (f"3 × array that is not a split's images or labels, left out (first {tmp_path / 'pneumoniamnist_28.npz'}: "
            "'test_imgs')") in result.stderr
    assert cli(index, tmp_path / "pneumoniamnist_28.npz", "--extract", tmp_path / "png", "--strict").exit_code == 1


def test_a_negative_class_number_is_an_error_at_its_row(cli, tmp_path):
    np.savez(tmp_path / "x.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.array([[0], [-1]]))
    result = cli(index, tmp_path / "x.npz", "--extract", tmp_path / "png")
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(f"{tmp_path / 'x.npz'}:train_labels[1]: class -1 is not one of 0..0")


def test_summary_of_chestmnist(cli, tmp_path):
    medmnist(tmp_path / "chestmnist_128.npz", size=128, labels=14)
    result = cli(index, tmp_path / "chestmnist_128.npz", "--extract", tmp_path / "png", "--summary")
    assert result.exit_code == 0 and "Pleural_Thickening" in result.stderr and "records" in result.stderr
    assert json.loads(result.stdout.splitlines()[0])["split"] == "train"
