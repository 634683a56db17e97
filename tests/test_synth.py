"""xr-synth and libxr.synth: deterministic, learnable datasets in every layout."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from xrtools.synth import main

from libxr.synth import LAYOUTS, SynthOptions, synthesize


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_seed_same_bytes(cli, tmp_path, layout):
    args = ["--layout", layout, "-n", 30, "--size", 32, "--seed", 4]
    # the same folder name: label tables name images from the folder above the dataset
    assert cli(main, tmp_path / "a" / "ds", *args).exit_code == 0
    assert cli(main, tmp_path / "b" / "ds", *args, "--workers", 2).exit_code == 0
    assert cli(main, tmp_path / "c" / "ds", *args[:-1], 5).exit_code == 0
    a, b, c = (digest(tmp_path / n / "ds") for n in "abc")
    assert a == b != c


def test_parallel_drawing_matches_serial(tmp_path):
    opts = {"layout": "folders", "count": 130, "size": 24, "seed": 1}
    synthesize(str(tmp_path / "serial"), SynthOptions(workers=1, **opts))
    synthesize(str(tmp_path / "parallel"), SynthOptions(workers=2, **opts))
    assert digest(tmp_path / "serial") == digest(tmp_path / "parallel")


def test_images_are_grayscale_of_the_asked_size(synth):
    for layout in LAYOUTS:
        root = synth(layout)
        image = next(p for p in root.rglob("*") if p.suffix in (".png", ".jpg"))
        with Image.open(image) as im:
            assert im.mode == "L" and im.size == (32, 32)


def test_labels_are_learnable_where_the_boxes_say(tmp_path):
    """A linear model on raw pixels separates the classes, and the finding is inside its box."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    root = tmp_path / "ds"
    synthesize(str(root), SynthOptions(count=240, size=48, splits=(), seed=3))
    boxes = {json.loads(line)["id"]: json.loads(line)["boxes"] for line in (root / "boxes.jsonl").open()}
    x, y, inside, outside = [], [], [], []
    for image_id, box in sorted(boxes.items()):
        pixels = np.asarray(Image.open(root / image_id), np.float32) / 255
        x.append(pixels[::2, ::2].ravel())
        y.append(image_id.startswith("PNEUMONIA"))
        if box:
            x0, y0, x1, y1 = box["PNEUMONIA"]
            inside.append(pixels[y0:y1, x0:x1].mean())
        else:
            outside.append(pixels[12:30, 2:24].mean())  # the same region of normal films
    assert 0.3 < np.mean(y) < 0.7
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), np.array(x), np.array(y), cv=3).mean()
    assert accuracy > 0.9
    assert np.mean(inside) > np.mean(outside) + 0.05


def test_class_weights_make_imbalance(tmp_path):
    synthesize(str(tmp_path / "ds"), SynthOptions(count=600, size=16, classes=("A", "B"), weights=(4, 1),
                                                  splits=(), seed=0))
    a, b = (len(list((tmp_path / "ds" / c).glob("*.png"))) for c in "AB")
    assert a + b == 600 and 3 < a / b < 5.5


def test_chexpert_table_looks_like_the_real_one(synth):
    root = synth("chexpert", count=200)
    header, *rows = (root / "train.csv").read_text().splitlines()
    assert header.startswith("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,")
    cells = {c for row in rows for c in row.split(",")[5:]}
    assert cells == {"", "0.0", "1.0", "-1.0"}
    assert all(row.startswith(f"{root.name}/train/patient") for row in rows)


def test_refuses_a_non_empty_folder_and_leaves_nothing_behind(cli, tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("mine")
    result = cli(main, tmp_path / "ds", "-n", 5)
    assert result.exit_code == 1 and "not empty" in result.stderr
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize("args, message", [
    pytest.param(["--classes", "only"], "at least two classes", id="one-class"),
    pytest.param(["--weights", "1,2,3"], "3 values for 2 classes", id="too-many-weights"),
    pytest.param(["--weights", "1,-2"], "positive", id="negative-weight"),
    pytest.param(["--weights", "1,nan"], "positive, finite numbers", id="nan-weight"),
    pytest.param(["--weights", "inf,1"], "positive, finite numbers", id="infinite-weight"),
    pytest.param(["--seed", "-1"], "--seed", id="negative-seed"),
    pytest.param(["--splits", "train=0.5,holdout=0.5"], "NAME is train, val or test",
                 id="unknown-split-name"),
    pytest.param(["--size", "8"], "--size", id="size-too-small"),
    pytest.param(["--classes", "../../ESCAPED,c"], "'../../ESCAPED' cannot name a class folder",
                 id="class-leaving-the-folder"),
    pytest.param(["--classes", ".hidden,c"], "cannot name a class folder", id="hidden-class"),
    pytest.param(["--classes", "A,A"], "--classes: 'A' is given twice", id="class-twice"),
    pytest.param(["--splits", "train=0.5,test=0.7"], "the fractions sum to 1.2, not 1", id="splits-over-1"),
    pytest.param(["--splits", "train=0.5,val=0.2,val=0.3"], "--splits: 'val' is given twice", id="split-twice"),
])
def test_bad_options(cli, tmp_path, args, message):
    result = cli(main, tmp_path / "ds", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "ds").exists()
