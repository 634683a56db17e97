"""xr-index on input that is not a clean collection: every source row ends as a correct record, or
the user is told (counted, first FILE:LINE) and --strict exits 1 saying why; no result is empty
or nonsense with exit 0."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from xrtools.index import main


def image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    return path


def labelled_table(tmp_path):
    for name in "abcd":
        image(tmp_path / "img" / f"{name}.png")
    table = tmp_path / "labels.csv"
    table.write_text("path,label\nimg/a.png,x\nimg/b.png,\nimg/c.png,y\nimg/d.png,\n")
    return table


def test_unlabelled_rows_are_counted_with_their_first_line(cli, tmp_path):
    table = labelled_table(tmp_path)
    result = cli(main, table)
    assert result.exit_code == 0 and len(result.records) == 4
    assert f"warning: 2 × record with no label (first {table}:3); --drop-unlabelled leaves them out" in result.stderr
    dropped = cli(main, table, "--drop-unlabelled")
    assert dropped.exit_code == 0 and [r["id"] for r in dropped.records] == ["img/a.png", "img/c.png"]
    assert "2 × record with no label" in dropped.stderr
    strict = cli(main, table, "--strict")
    assert strict.exit_code == 1 and len(strict.records) == 4          # written, then the job fails
    assert strict.stderr.strip().splitlines()[-1] == "xr-index: error: --strict: 2 × record with no label"


def test_every_row_unlabelled_and_dropped_is_an_error(cli, tmp_path):
    image(tmp_path / "a.png")
    (tmp_path / "t.csv").write_text("path,label\na.png,\n")
    result = cli(main, tmp_path / "t.csv", "--drop-unlabelled")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().endswith(f"{tmp_path / 't.csv'}: no records: 1 × record with no label (left out)")


def test_file_names_that_are_not_utf8_are_counted_and_the_output_stays_json(cli, tmp_path):
    for name in (b"a.png", b"caf\xe9.png", b"b.png"):
        os.rename(image(tmp_path / "NORMAL" / "x.png"), os.path.join(os.fsencode(tmp_path / "NORMAL"), name))
    result = cli(main, tmp_path)
    assert result.exit_code == 0
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["NORMAL/a.png", "NORMAL/b.png"]
    assert f"1 × file name that is not UTF-8, left out (first {tmp_path}/NORMAL/caf\\xe9.png)" in result.stderr
    strict = cli(main, tmp_path, "--strict")
    assert strict.exit_code == 1 and strict.stderr.strip().endswith("--strict: 1 × file name that is not UTF-8, left out")


@pytest.mark.parametrize("files, message", [
    pytest.param({"0.png": "image", "1.png": "image", "notes.txt": "x"},
                 "no records: 2 images lie outside class folders; for a flat folder with a label table use "
                 "`xr-index TABLE`", id="flat-folder-of-images"),
    pytest.param({"train/0.png": "image"}, "no records: 1 images lie outside class folders",
                 id="images-directly-in-a-split-folder"),
    pytest.param({"chestmnist.npz": "x"}, "no records; for its MedMNIST arrays use `xr-index {tmp}/chestmnist.npz "
                                          "--extract DIR`", id="folder-holding-an-npz"),
    pytest.param({"readme.md": "x"}, "no images found (skipped 1 × non-image file readme.md)",
                 id="nothing-but-text"),
])
def test_an_empty_result_says_why(cli, tmp_path, files, message):
    for name, content in files.items():
        if content == "image":
            image(tmp_path / name)
        else:
            (tmp_path / name).write_text(content)
    result = cli(main, tmp_path)
    assert result.exit_code == 1 and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"xr-index: error: {tmp_path}: {message.format(tmp=tmp_path)}"), last


@pytest.mark.parametrize("tables, first", [
    pytest.param(["siteA/metadata.csv", "siteB/metadata.csv"], "siteA/metadata.csv", id="a-table-per-sub-folder"),
    pytest.param(["train/covid/labels.csv"], "train/covid/labels.csv", id="a-table-inside-a-class-folder"),
    pytest.param(["a.csv", "b.tsv"], "a.csv", id="two-tables-beside-an-images-folder"),
])
def test_folders_holding_tables_are_not_taken_for_classes(cli, tmp_path, tables, first):
    for table in tables:
        folder = (tmp_path / table).parent
        image(folder / "images" / "0.png")
        (tmp_path / table).write_text("path,label\nimages/0.png,covid\n")
    result = cli(main, tmp_path)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"label tables lie among the image folders ({tmp_path / first}" in result.stderr
    assert f"index a table (xr-index {tmp_path / first})" in result.stderr
    forced = cli(main, tmp_path, "--layout", "folders")
    assert forced.exit_code == 0 and forced.records         # the user says the folders are classes


def test_a_table_beside_split_folders_is_fine(cli, tmp_path):
    image(tmp_path / "train" / "NORMAL" / "0.png")
    image(tmp_path / "test" / "COVID" / "1.png")
    (tmp_path / "train.csv").write_text("whatever\n")
    (tmp_path / "notes.csv").write_text("whatever\n")
    result = cli(main, tmp_path)
    assert result.exit_code == 0 and [r["label"] for r in result.records] == ["COVID", "NORMAL"]


@pytest.mark.parametrize("name, content, kind", [
    pytest.param("x.h5", b"\x89HDF\r\n\x1a\n" + bytes(100), "an HDF5 file", id="hdf5"),
    pytest.param("x.png", None, "a PNG image", id="png"),
    pytest.param("x.npy", b"\x93NUMPY\x01\x00" + bytes(100), "a NumPy .npy array", id="npy"),
    pytest.param("labels.csv.gz", b"\x1f\x8b\x08" + bytes(100), "gzip data", id="gzipped-table"),
    pytest.param("x.zip", None, "a zip archive", id="zip-without-arrays"),
    pytest.param("x.dcm", bytes(128) + b"DICM" + bytes(100), "a DICOM image", id="dicom"),
    pytest.param("x.bin", b"a,b\n\x00\x01\x02", "binary data", id="nul-bytes"),
])
def test_binary_files_are_named_as_binary(cli, tmp_path, name, content, kind):
    path = tmp_path / name
    if name == "x.png":
        image(path)
    elif name == "x.zip":
        import zipfile

        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("labels.csv", "path,label\n")
    else:
        path.write_bytes(content)
    for layout in ((), ("--layout", "csv")):
        result = cli(main, path, *layout)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"xr-index: error: {path} is binary ({kind}), not a label table: ")


def test_a_utf16_table_is_text(cli, tmp_path):
    """NUL bytes, but text in the encoding given."""
    image(tmp_path / "a.png")
    (tmp_path / "t.csv").write_text("path,label\na.png,x\n", encoding="utf-16")
    result = cli(main, tmp_path / "t.csv", "--encoding", "utf-16", "--layout", "csv")
    assert result.exit_code == 0 and result.records[0]["label"] == "x"


@pytest.mark.parametrize("text, message", [
    pytest.param('path,label\nimg/a.png,"x\nimg/b.png,x\nimg/c.png,y"\nimg/d.png,x\n',
                 "t.csv:2: the 'label' cell runs over lines 2-4: a quote left open?", id="open-quote-in-label"),
    pytest.param('path,label\n"img/a.png\nimg/b.png",x\n', "t.csv:2: the 'path' cell runs over lines 2-3: a quote left open?",
                 id="open-quote-in-path"),
    pytest.param("path,label,patient\nimg/a.png,x,P1\nimg/b.png,Viral, Pneumonia,P2\n",
                 "t.csv:3: 4 cells, the header has 3 (a delimiter inside a cell needs quotes)", id="cell-too-many"),
])
def test_rows_that_swallow_or_spill_cells_are_errors_at_their_first_line(cli, tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    result = cli(main, tmp_path / "t.csv")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == f"xr-index: error: {tmp_path / message}"


def test_free_text_over_lines_stays_and_lines_are_where_rows_start(cli, tmp_path):
    for name in "abc":
        image(tmp_path / "img" / f"{name}.png")
    table = tmp_path / "t.csv"
    table.write_text('path,label,note\nimg/a.png,x,"two\nlines"\nimg/b.png,y,\nimg/c.png,x,,,\n')
    result = cli(main, table, "--strict")
    assert result.exit_code == 0, result.stderr
    assert [(r["id"], r["source"]["line"], r["source"]["note"]) for r in result.records] == [
        ("img/a.png", 2, "two\nlines"), ("img/b.png", 4, ""), ("img/c.png", 5, "")]   # blank extra cells are fine


def test_rows_swallowed_by_a_quote_left_open_in_a_kept_column_are_an_error(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text('path,label,note\nimg/a.png,x,"oops\nimg/b.png,y,z\nimg/c.png,x,"\n')
    result = cli(main, table)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == (f"xr-index: error: {table}:2: the 'note' cell runs over lines 2-4: "
                                     "a quote left open?")


def test_paths_spelt_two_ways_give_one_id(cli, tmp_path):
    image(tmp_path / "img" / "a.png")
    (tmp_path / "t.csv").write_text("path,label\nimg//a.png,x\n././img/./a.png,x\n")
    result = cli(main, tmp_path / "t.csv")
    assert [(r["id"], r["path"]) for r in result.records] == [("img/a.png", f"{tmp_path}/img/a.png")] * 2
    assert (f"1 × row repeating an earlier row's image and labels (first {tmp_path / 't.csv'}:3: 'img/a.png'); "
            "its records are kept, and xr-split refuses repeated ids: correct the table") in result.stderr


def test_a_blank_nih_findings_cell_is_no_label_not_fifteen_negatives(cli, tmp_path):
    table = tmp_path / "Data_Entry_2017_v2020.csv"
    table.write_text("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
                     "a.png,No Finding,0,1,50,M,PA\nb.png,,0,2,50,F,PA\n")
    for name in "ab":
        image(tmp_path / "images" / f"{name}.png")
    result = cli(main, tmp_path)
    assert result.exit_code == 0 and [r["labels"] for r in result.records][1] == {}
    assert result.records[0]["labels"]["No Finding"] == 1
    assert f"1 × record with no label (first {table}:3)" in result.stderr
    assert cli(main, tmp_path, "--strict").exit_code == 1


def test_a_symlink_loop_among_class_folders_is_not_fatal(cli, tmp_path):
    image(tmp_path / "A" / "a.png")
    image(tmp_path / "B" / "b.png")
    os.symlink("l2.csv", tmp_path / "A" / "l1.csv")
    os.symlink("l1.csv", tmp_path / "A" / "l2.csv")
    result = cli(main, tmp_path)
    assert result.exit_code == 0 and [r["id"] for r in result.records] == ["A/a.png", "B/b.png"]


def test_stdin_is_refused_with_what_to_do(cli):
    result = cli(main, "-", input="path,label\na.png,x\n")
    assert result.exit_code == 2 and "xr-index reads a folder or a table file, not stdin" in result.stderr


def test_linked_and_hidden_folders_inside_a_class_folder_are_walked_or_counted(cli, tmp_path):
    image(tmp_path / "ds" / "A" / "a.png")
    image(tmp_path / "ds" / "A" / ".cache" / "h.png")
    image(tmp_path / "elsewhere" / "batch" / "b.png")
    os.symlink(tmp_path / "elsewhere" / "batch", tmp_path / "ds" / "A" / "batch2")
    os.symlink(tmp_path / "ds" / "A", tmp_path / "ds" / "A" / "loop")      # a link back up ends
    result = cli(main, tmp_path / "ds", "--strict")
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in result.records] == ["A/a.png", "A/batch2/b.png"]
    assert "hidden folder .cache" in result.stderr and "a link to a folder already indexed" in result.stderr


@pytest.mark.parametrize("table, ids, message", [
    pytest.param("path,label\na.png,NORMAL\nb.png,x\na.png,PNEUMONIA\na.png,NORMAL\n", ["a.png", "b.png", "a.png", "a.png"],
                 "1 × row labelling an earlier row's image otherwise (first {t}:4: 'a.png')", id="same-image-other-label"),
    pytest.param("path,label\na.png,NORMAL\n./a.png,NORMAL\n", ["a.png", "a.png"],
                 "1 × row repeating an earlier row's image and labels (first {t}:3: 'a.png')", id="same-row-twice"),
    pytest.param("path,label\nimg,NORMAL\na.png,NORMAL\n", ["a.png"], "1 × row naming a folder, not an image, left out "
                 "(first {t}:2", id="a-folder"),
])
def test_rows_that_cannot_be_records_of_their_own_are_counted_and_fail_strict(cli, tmp_path, table, ids, message):
    image(tmp_path / "a.png")
    image(tmp_path / "b.png")
    (tmp_path / "img").mkdir()
    path = tmp_path / "t.csv"
    path.write_text(table)
    result = cli(main, path)
    assert result.exit_code == 0 and [r["id"] for r in result.records] == ids
    assert message.format(t=path) in result.stderr
    assert cli(main, path, "--strict").exit_code == 1


def test_ids_whose_hashes_meet_are_told_apart_on_the_second_reading(cli, tmp_path, monkeypatch):
    """Only ids that really repeat are reported, whatever their 64-bit hashes."""
    from libxr.index import repeats

    monkeypatch.setattr(repeats, "hash", lambda value: 7, raising=False)     # every id collides
    for name in "abc":
        image(tmp_path / f"{name}.png")
    path = tmp_path / "t.csv"
    path.write_text("path,label\na.png,x\nb.png,y\nc.png,x\n")
    result = cli(main, path, "--strict")
    assert result.exit_code == 0 and "row" not in result.stderr.replace("rows", "")


@pytest.mark.parametrize("layout, table, message", [
    pytest.param("chexpert", "Path,Frontal/Lateral,Edema,Cardiomegaly\n,Frontal,1.0,0.0\n",
                 "train.csv:2: empty path cell", id="chexpert"),
    pytest.param("chexpert", "Path,Frontal/Lateral,Edema\nCheXpert-v1.0-small/,Frontal,1.0\n",
                 "train.csv:2: empty path cell", id="chexpert-dataset-folder-only"),
    pytest.param("nih", "Image Index,Finding Labels,Patient ID,View Position\n ,Effusion,1,PA\n",
                 "train.csv:2: empty 'Image Index' cell", id="nih"),
    pytest.param("csv", "path,label\n,x\n", "train.csv:2: empty path cell", id="csv"),
])
def test_an_empty_path_cell_is_an_error_at_its_line(cli, tmp_path, layout, table, message):
    path = tmp_path / "CheXpert-v1.0-small" / "train.csv"
    path.parent.mkdir()
    path.write_text(table)
    result = cli(main, path, "--layout", layout)
    assert result.exit_code == 1 and result.stderr.strip().endswith(message), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("cell, labels", [
    pytest.param("1.0", {"Edema": 1}, id="positive"),
    pytest.param("-1", {"Edema": -1}, id="uncertain"),
    pytest.param("", {}, id="blank"),
    pytest.param("11", None, id="not-a-value"),
])
def test_a_chexpert_table_with_one_observation_column(cli, tmp_path, cell, labels):
    path = tmp_path / "train.csv"
    path.write_text(f"Path,Frontal/Lateral,Edema\nCheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg,"
                    f"frontal,{cell}\n")
    result = cli(main, path, "--layout", "chexpert", "--frontal-only", "--uncertain", "keep")
    if labels is None:
        assert result.exit_code == 1 and "train.csv:2: Edema: '11' is not 1, 0, -1 or blank" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    else:
        assert result.exit_code == 0, result.stderr
        assert [r["labels"] for r in result.records] == [labels]      # 'frontal' in lower case is frontal


def test_a_mura_study_folder_without_images_is_counted(cli, synth):
    root = synth("mura", count=24, name="mura-empty-study")
    table = root / "train_labeled_studies.csv"
    first = table.read_text().splitlines()[0].split(",")[0]
    study = root.parent / first if (root.parent / first).is_dir() else root / first.split("/", 1)[1]
    for f in study.iterdir():
        f.unlink()
    result = cli(main, table)
    assert result.exit_code == 0
    assert f"1 × study folder without images (first {table}:1" in result.stderr
    assert cli(main, table, "--strict").exit_code == 1


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_nih_split_lists_are_read_in_their_encoding(cli, synth, tmp_path, encoding):
    import shutil

    root = tmp_path / "nih"
    shutil.copytree(synth("nih", count=20), root)
    for name in ("train_val_list.txt", "test_list.txt"):
        text = (root / name).read_text()
        (root / name).write_text(text, encoding=encoding)
    result = cli(main, root, "--strict")
    assert result.exit_code == 0, result.stderr
    assert all(r.get("split") in ("train", "test") for r in result.records)


def test_a_missing_images_hint_fits_the_paths_that_are_missing(cli, tmp_path):
    image(tmp_path / "data" / "a.png")
    path = tmp_path / "t.csv"
    path.write_text("path,label\n/mnt/old/data/a.png,x\nimg/gone.png,y\n")
    result = cli(main, path, "--strip-prefix", "/mnt/old", "--root", tmp_path)
    assert result.exit_code == 0 and "1 listed images" in result.stderr
    assert "--root" in result.stderr and "paths are absolute" not in result.stderr
    absolute = cli(main, path)
    assert "2 listed images" in absolute.stderr and "--root says where they are" in absolute.stderr
    path.write_text("path,label\n/mnt/old/data/a.png,x\n")
    assert "the table's paths are absolute: --strip-prefix PREFIX --root DIR" in cli(main, path).stderr


@pytest.mark.parametrize("order", ["le", "be"])
def test_utf16_without_a_byte_order_mark_says_which_encoding(cli, tmp_path, order):
    path = tmp_path / "t.csv"
    path.write_bytes("path,label\na.png,x\n".encode(f"utf-16-{order}"))
    result = cli(main, path)
    assert result.exit_code == 1
    assert result.stderr == f"xr-index: error: {path}: UTF-16 text without a byte-order mark: pass --encoding utf-16-{order}\n"
    image(tmp_path / "a.png")
    assert cli(main, path, "--encoding", f"utf-16-{order}").records[0]["label"] == "x"


def test_the_repeat_check_sees_the_records_as_written(cli, tmp_path):
    """Rows left out (--drop-missing) are no repeat; labels are compared as --map made them."""
    image(tmp_path / "a.png")
    path = tmp_path / "t.csv"
    path.write_text("path,label\na.png,A\nimgs/gone.png,A\nimgs/gone.png,A\n")
    dropped = cli(main, path, "--drop-missing", "--strict")
    assert dropped.exit_code == 1 and "row repeating" not in dropped.stderr and len(dropped.records) == 1
    path.write_text("path,label\na.png,A\na.png,B\n")
    mapped = cli(main, path, "--map", "A=C", "--map", "B=C")
    assert "1 × row repeating an earlier row's image and labels (first" in mapped.stderr
    assert "otherwise" not in mapped.stderr
