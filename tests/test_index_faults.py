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
