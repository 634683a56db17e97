"""xr-index: every layout on synthetic data, the real label files, and bad input."""

import json

import pytest
from conftest import shared
from xrtools.index import main

LAYOUT_CASES = {
    # layout: (fields every record has, label check)
    "folders": ({"id", "path", "label", "split", "source"}, lambda r: r["label"] in ("NORMAL", "PNEUMONIA")),
    "csv": ({"id", "path", "label", "patient", "split"}, lambda r: r["label"] in ("NORMAL", "PNEUMONIA")),
    "mura": ({"id", "path", "label", "patient", "study", "group", "split"},
             lambda r: r["label"] == ("abnormal" if "_positive/" in r["id"] else "normal")),
    "chexpert": ({"id", "path", "labels", "patient", "study", "view", "sex", "age", "split"},
                 lambda r: set(r["labels"].values()) <= {1, 0, -1}),
    "nih": ({"id", "path", "labels", "patient", "view", "split"},
            lambda r: len(r["labels"]) == 15 and r["labels"]["No Finding"] == int(
                not any(v for k, v in r["labels"].items() if k != "No Finding"))),
}


@pytest.mark.parametrize("layout", sorted(LAYOUT_CASES))
def test_layout_indexes_its_synthetic_dataset(cli, synth, layout):
    root = synth(layout)
    fields, label_ok = LAYOUT_CASES[layout]
    detected = cli(main, root)
    forced = cli(main, root, "--layout", layout)
    assert detected.exit_code == forced.exit_code == 0, detected.stderr
    assert detected.stdout == forced.stdout
    records = detected.records
    assert len(records) == 60
    for rec in records:
        assert fields <= rec.keys(), rec
        assert label_ok(rec), rec
        assert (root / rec["path"]).is_file() or (pytest.importorskip("os").path.isfile(rec["path"]))
    # ids are the ones xr-synth promised (boxes.jsonl), so later commands can join on them
    boxes = [json.loads(line)["id"] for line in (root / "boxes.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(boxes)
    assert len({r["id"] for r in records}) == 60


def test_patients_never_straddle_the_synthetic_splits(cli, synth):
    records = cli(main, synth("csv")).records
    splits = {}
    for r in records:
        splits.setdefault(r["patient"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_folders_skip_non_images_and_count_them(cli, synth, tmp_path):
    root = tmp_path / "ds"
    for cls in ("A", "B"):
        (root / "train" / cls).mkdir(parents=True)
        (root / "train" / cls / "x.png").write_bytes(b"png")
        (root / "train" / cls / ".DS_Store").write_bytes(b"")
        (root / "train" / cls / "notes.txt").write_text("hi")
    (root / "Thumbs.db").write_bytes(b"")
    result = cli(main, root)
    assert result.exit_code == 0
    assert [r["label"] for r in result.records] == ["A", "B"]
    assert "skipped 2 × non-image file .DS_Store" in result.stderr
    assert "skipped 2 × non-image file notes.txt" in result.stderr
    assert "Thumbs.db" in result.stderr


def test_folders_without_split_folders_and_with_spaces(cli, tmp_path):
    for cls in ("Viral Pneumonia", "Normal"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "1.jpeg").write_bytes(b"x")
    records = cli(main, tmp_path, "--layout", "folders").records
    assert [(r["id"], r["label"]) for r in records] == [("Normal/1.jpeg", "Normal"),
                                                        ("Viral Pneumonia/1.jpeg", "Viral Pneumonia")]
    assert all("split" not in r for r in records)


def test_patient_regex(cli, synth):
    result = cli(main, synth("folders"), "--patient-regex", r"person(\d+)_")
    assert all(r["patient"].isdigit() for r in result.records)
    partial = cli(main, synth("folders"), "--patient-regex", r"person(\d*1)_")
    first = next(r["path"] for r in partial.records if "patient" not in r)      # in the order indexed
    assert partial.exit_code == 0
    assert f"54 × file name --patient-regex does not match (no patient id) (first {first})" in partial.stderr
    strict = cli(main, synth("folders"), "--patient-regex", r"person(\d*1)_", "--strict")
    assert strict.exit_code == 1
    assert strict.stderr.splitlines()[-1] == "xr-index: error: --strict: 54 × file name --patient-regex does not match"
    empty = cli(main, synth("folders"), "--patient-regex", r"person(\d{0})")        # a group that matches nothing
    assert "patient" not in empty.records[0] and "60 × file name --patient-regex" in empty.stderr


def test_bad_patient_regex_is_a_usage_error(cli, synth):
    result = cli(main, synth("folders"), "--patient-regex", "(")
    assert result.exit_code == 2 and "--patient-regex" in result.stderr


def test_unknown_layout_lists_the_layouts(cli, synth):
    result = cli(main, synth("folders"), "--layout", "dicomdir")
    assert result.exit_code == 2
    for layout in LAYOUT_CASES:
        assert layout in result.stderr


def test_summary_table(cli, synth):
    result = cli(main, synth("folders"), "--summary")
    assert "NORMAL" in result.stderr and "records" in result.stderr and "train" in result.stderr


# --- label tables: CheXpert, MURA, NIH, any CSV ------------------------------------------------

CHEXPERT_HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
                   "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
                   "Pleural Effusion,Pleural Other,Fracture,Support Devices\n")
CHEXPERT_ROWS = (
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,"
    "-1.0,-1.0,,-1.0,,-1.0,,1.0,\n"
    "CheXpert-v1.0-small/train/patient00003/study1/view2_lateral.jpg,Male,41,Lateral,,,,1.0,,,,,1.0,,0.0,,,,\n"
)


@pytest.fixture
def chexpert_csv(tmp_path):
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    path = folder / "train.csv"
    path.write_text(CHEXPERT_HEADER + CHEXPERT_ROWS)
    return path


@pytest.mark.parametrize("args, expected", [
    pytest.param([],
                 {"Cardiomegaly": -1, "Lung Opacity": 1, "Edema": -1, "Consolidation": -1, "Atelectasis": -1,
                  "Pleural Effusion": -1, "Fracture": 1},
                 id="uncertain-kept-by-default"),
    pytest.param(["--uncertain", "ones"],
                 {"Cardiomegaly": 1, "Lung Opacity": 1, "Edema": 1, "Consolidation": 1,
                  "Atelectasis": 1, "Pleural Effusion": 1, "Fracture": 1},
                 id="uncertain-as-ones"),
    pytest.param(["--uncertain", "zeros"],
                 {"Cardiomegaly": 0, "Lung Opacity": 1, "Edema": 0, "Consolidation": 0,
                  "Atelectasis": 0, "Pleural Effusion": 0, "Fracture": 1},
                 id="uncertain-as-zeros"),
    pytest.param(["--uncertain", "ignore"], {"Lung Opacity": 1, "Fracture": 1}, id="uncertain-ignored"),
    pytest.param(["--uncertain", "ones", "--propagate"],
                 {"Enlarged Cardiomediastinum": 1, "Cardiomegaly": 1, "Lung Opacity": 1, "Edema": 1,
                  "Consolidation": 1, "Atelectasis": 1, "Pleural Effusion": 1, "Fracture": 1},
                 id="propagated-then-uncertain-as-ones"),
    pytest.param(["--propagate"],
                 {"Enlarged Cardiomediastinum": -1, "Cardiomegaly": -1, "Lung Opacity": 1, "Edema": -1,
                  "Consolidation": -1, "Atelectasis": -1, "Pleural Effusion": -1, "Fracture": 1},
                 id="propagated-uncertain-kept"),
    pytest.param(["--labels", "Edema,Fracture", "--uncertain", "zeros"], {"Edema": 0, "Fracture": 1},
                 id="chosen-labels-only"),
])
def test_chexpert_policies(cli, chexpert_csv, args, expected):
    result = cli(main, chexpert_csv, *args)
    assert result.exit_code == 0, result.stderr
    assert result.records[0]["labels"] == expected


def test_chexpert_blank_zero_and_record_fields(cli, chexpert_csv):
    records = cli(main, chexpert_csv, "--blank", "zero").records
    assert len(records[0]["labels"]) == 14 and records[0]["labels"]["No Finding"] == 0
    lateral = records[1]
    assert lateral["labels"]["Pneumonia"] == 1 and lateral["labels"]["Pneumothorax"] == 0
    assert {k: lateral[k] for k in ("id", "patient", "study", "view", "sex", "age", "split")} == {
        "id": "train/patient00003/study1/view2_lateral.jpg", "patient": "patient00003",
        "study": "patient00003/study1", "view": "Lateral", "sex": "M", "age": 41, "split": "train"}
    assert lateral["path"] == str(chexpert_csv.parent / "train/patient00003/study1/view2_lateral.jpg")
    assert lateral["source"] == {"table": "train.csv", "line": 3}


def test_chexpert_frontal_only(cli, chexpert_csv):
    records = cli(main, chexpert_csv, "--frontal-only").records
    assert [r["view"] for r in records] == ["AP"]


def test_chexpert_bad_value_names_file_and_line(cli, chexpert_csv):
    chexpert_csv.write_text(CHEXPERT_HEADER + CHEXPERT_ROWS.replace("-1.0,1.0", "maybe,1.0", 1))
    result = cli(main, chexpert_csv)
    assert result.exit_code == 1
    assert f"{chexpert_csv}:2: Cardiomegaly: 'maybe'" in result.stderr


def test_missing_images_are_counted_and_strict_fails(cli, chexpert_csv):
    result = cli(main, chexpert_csv)
    assert result.exit_code == 0 and len(result.records) == 2
    assert "2 listed images or folders do not exist" in result.stderr
    strict = cli(main, chexpert_csv, "--strict")
    assert strict.exit_code == 1 and len(strict.records) == 2
    dropped = cli(main, chexpert_csv, "--drop-missing")      # nothing left: an error, not an empty manifest
    assert dropped.exit_code == 1 and dropped.records == []
    assert "2 listed images or folders do not exist" in dropped.stderr
    assert dropped.stderr.strip().splitlines()[-1].startswith(f"xr-index: error: {chexpert_csv}: no records: 2 listed images do not exist")


def test_root_rebases_table_paths(cli, chexpert_csv, tmp_path):
    records = cli(main, chexpert_csv, "--root", tmp_path / "images").records
    assert records[0]["path"] == str(tmp_path / "images" / "CheXpert-v1.0-small/train/patient00002/study2/"
                                     "view1_frontal.jpg")


NIH_2020 = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
            "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
            "00000001_000.png,Cardiomegaly|Emphysema,0,1,57,M,PA,2682,2749,0.143,0.143\n"
            "00000002_000.png,No Finding,0,2,80,F,AP,2500,2048,0.171,0.171\n")
NIH_2017 = NIH_2020.replace("\n", ",\n").replace("57,M", "057Y,M")


@pytest.mark.parametrize("text", [NIH_2020, NIH_2017], ids=["2020", "2017"])
def test_nih_tables(cli, tmp_path, text):
    table = tmp_path / "Data_Entry_2017.csv"
    table.write_text(text)
    (tmp_path / "test_list.txt").write_text("00000002_000.png\n")
    records = cli(main, tmp_path).records
    first, second = records
    assert {k for k, v in first["labels"].items() if v} == {"Cardiomegaly", "Emphysema"}
    assert second["labels"]["No Finding"] == 1 and sum(second["labels"].values()) == 1
    assert (first["patient"], first["view"], first["sex"], first["age"]) == ("1", "PA", "M", 57)
    assert second["split"] == "test" and "split" not in first
    assert first["source"]["OriginalImage[Height]"] == "2749"
    assert first["path"] == str(tmp_path / "00000001_000.png")


def test_csv_layout_with_named_columns_and_cp1252(cli, tmp_path):
    table = tmp_path / "labels.tsv"
    table.write_bytes("fichier\tdiagnostic\tpatient\tsite\nimg/a.png\tépanchement\tp1\tLyon\n"
                      "img/b.png\tnormal\tp2\tNîmes\n".encode("cp1252"))
    args = [table, "--layout", "csv", "--path-col", "fichier", "--label-col", "diagnostic",
            "--group-col", "site"]
    wrong = cli(main, *args)
    assert wrong.exit_code == 1
    assert f"{table}:2: not utf-8 text" in wrong.stderr and "--encoding" in wrong.stderr
    right = cli(main, *args, "--encoding", "cp1252")
    assert right.exit_code == 0
    assert [(r["label"], r["patient"], r["group"]) for r in right.records] == [
        ("épanchement", "p1", "Lyon"), ("normal", "p2", "Nîmes")]


def test_csv_multilabel_columns(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("path,a,b,c\nx.png,1,0,\ny.png,yes,-1,no\n")
    records = cli(main, table, "--label-cols", "a,b,c").records
    assert [r["labels"] for r in records] == [{"a": 1, "b": 0}, {"a": 1, "b": -1, "c": 0}]


def test_missing_column_names_column_and_file(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file,label\nx.png,a\n")
    result = cli(main, table, "--layout", "csv", "--path-col", "image")
    assert result.exit_code == 1
    assert f"{table}: no column 'image'" in result.stderr and "'file'" in result.stderr


def test_short_row_is_reported(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("path,label,patient\nx.png,a,p\ny.png\n")
    result = cli(main, table)
    assert result.exit_code == 1 and f"{table}:3: 1 cells" in result.stderr


@pytest.mark.parametrize("header", ["", "Img_Path\n"], ids=["official", "with-header"])
def test_mura_csv_with_or_without_header(cli, tmp_path, header):
    folder = tmp_path / "MURA-v1.1"
    folder.mkdir()
    (folder / "valid_image_paths.csv").write_text(
        header + "MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive/image1.png\n"
                 "MURA-v1.1/valid/XR_HAND/patient11190/study2_negative/image3.png\n")
    records = cli(main, folder / "valid_image_paths.csv").records
    assert [(r["id"], r["label"], r["patient"], r["study"], r["group"], r["split"]) for r in records] == [
        ("valid/XR_WRIST/patient11185/study1_positive/image1.png", "abnormal", "patient11185",
         "XR_WRIST/patient11185/study1", "XR_WRIST", "val"),
        ("valid/XR_HAND/patient11190/study2_negative/image3.png", "normal", "patient11190",
         "XR_HAND/patient11190/study2", "XR_HAND", "val")]


def test_mura_study_table_expands_to_images(cli, synth):
    root = synth("mura")
    from_tree = cli(main, root / "train_image_paths.csv").records
    from_studies = cli(main, root / "train_labeled_studies.csv").records
    assert sorted(r["id"] for r in from_studies) == sorted(r["id"] for r in from_tree)


def test_mura_tree_without_csvs(cli, synth, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(synth("mura"), tree, ignore=shutil.ignore_patterns("*.csv"))
    from_tree = cli(main, tree).records
    from_csv = cli(main, synth("mura")).records
    assert {r["id"]: r["label"] for r in from_tree} == {r["id"]: r["label"] for r in from_csv}


def test_check_reports_unreadable_images(cli, synth, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(synth("folders"), root)
    images = sorted(root.glob("train/*/*.png"))
    images[0].write_bytes(b"")
    images[1].write_text("this is not a png")
    result = cli(main, root, "--check")
    assert result.exit_code == 0 and len(result.records) == 60
    assert f"unreadable: {images[0]}: empty file" in result.stderr
    assert f"unreadable: {images[1]}: not an image PIL can read" in result.stderr
    assert cli(main, root, "--check", "--strict").exit_code == 1
    assert cli(main, synth("folders"), "--check", "--strict").exit_code == 0


# --- the real label files and images in ../shared/data -----------------------------------------

def test_real_chest_xray(cli):
    root = shared("chest_xray")
    result = cli(main, root, "--patient-regex", r"(person\d+|IM-\d+)")
    records = result.records
    counts = {}
    for r in records:
        counts[(r["split"], r["label"])] = counts.get((r["split"], r["label"]), 0) + 1
    assert counts == {("train", "NORMAL"): 1341, ("train", "PNEUMONIA"): 3875,
                      ("test", "NORMAL"): 234, ("test", "PNEUMONIA"): 390}
    assert ".DS_Store" in result.stderr
    assert all("patient" in r for r in records if "person" in r["id"])


def test_real_covid_three_classes(cli):
    records = cli(main, shared("covid19-3class")).records
    labels = {r["label"] for r in records}
    assert labels == {"Covid", "Normal", "Viral Pneumonia"} and len(records) == 317


def test_real_mura_csvs(cli):
    result = cli(main, shared("MURA-v1.1"))
    records = result.records
    assert len(records) == 36808 + 3197
    assert sum(r["split"] == "val" for r in records) == 3197
    assert len({r["study"] for r in records if r["split"] == "train"}) == 13457
    assert len({r["study"] for r in records if r["split"] == "val"}) == 1199
    assert {r["group"] for r in records} == {"XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND",
                                             "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST"}
    assert "40,005 listed images or folders do not exist" in result.stderr


def test_real_chexpert_csv(cli):
    result = cli(main, shared("CheXpert-v1.0-small", "train.csv"), "--uncertain", "ones", "--propagate")
    records = result.records
    assert len(records) == 223414
    assert len({r["patient"] for r in records}) == 64540
    second = records[1]
    assert second["id"] == "train/patient00002/study2/view1_frontal.jpg"
    assert second["labels"]["Enlarged Cardiomediastinum"] == 1  # propagated from uncertain Cardiomegaly
    for r in records[:5000]:
        labels = r["labels"]
        for child, parent in (("Cardiomegaly", "Enlarged Cardiomediastinum"), ("Edema", "Lung Opacity"),
                              ("Pneumonia", "Consolidation")):
            if labels.get(child) == 1:
                assert labels.get(parent) == 1


def test_dicom_files_are_indexed_like_images(cli, tmp_path):
    for cls in ("abnormal", "normal"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "scan.dcm").write_bytes(b"\0" * 128 + b"DICM")
    records = cli(main, tmp_path).records
    assert [(r["id"], r["label"]) for r in records] == [("abnormal/scan.dcm", "abnormal"),
                                                        ("normal/scan.dcm", "normal")]


def test_fields_from_file_names(cli, synth):
    records = cli(main, synth("folders", count=30, size=32), "--field", "person=person(\\d+)",
                  "--field", "second=_(2)\\.png").records
    assert all(r["person"] == r["id"].split("person")[1].split("_")[0] for r in records)
    assert {r.get("second") for r in records} == {"2", None}
    assert any("second" not in r for r in records)


@pytest.mark.parametrize("field, message", [pytest.param("label=x", "xr sets itself", id="reserved-name"),
                                            pytest.param("kind", "NAME=REGEX", id="no-regex"),
                                            pytest.param("kind=(", "--field kind=", id="bad-regex")])
def test_bad_fields(cli, synth, field, message):
    result = cli(main, synth("folders", count=30, size=32), "--field", field)
    assert result.exit_code == 2 and message in result.stderr


def test_hash_marks_byte_identical_copies(cli, synth, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(synth("folders", count=20, size=32), root)
    first = min((root / "train" / "NORMAL").iterdir()) if (root / "train").exists() else min((root / "NORMAL").iterdir())
    shutil.copy(first, first.with_name("copy_of_it.png"))
    records = cli(main, root, "--hash").records
    digests = [r["sha256"] for r in records]
    assert len(digests) == 21 and all(len(d) == 64 for d in digests)
    twins = [r["id"] for r in records if r["sha256"] == next(x["sha256"] for x in records if x["path"] == str(first))]
    assert len(twins) == 2 and len(set(digests)) == 20


def test_an_image_hash_cannot_read_is_counted_and_fails_strict(cli, tmp_path, monkeypatch):
    """Root reads every file, so the refusal is made: an unreadable file keeps its record, without sha256."""
    from libxr.pixels import files

    real = files._sha256
    monkeypatch.setattr(files, "_sha256", lambda path: (None, "Permission denied") if path.endswith("b.png")
                        else real(path))
    for name in ("a", "b"):
        (tmp_path / "A").mkdir(exist_ok=True)
        (tmp_path / "A" / f"{name}.png").write_bytes(b"x")
    result = cli(main, tmp_path, "--hash")
    assert result.exit_code == 0 and ["sha256" in r for r in result.records] == [True, False]
    assert f"{tmp_path / 'A' / 'b.png'}: Permission denied (no sha256)" in result.stderr
    assert cli(main, tmp_path, "--hash", "--strict").exit_code == 1
    both = cli(main, tmp_path, "--hash", "--check")         # one bad file is one unreadable image, said once
    assert "(no sha256)" not in both.stderr and both.stderr.count(str(tmp_path / "A" / "b.png")) == 1
