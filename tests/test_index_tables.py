"""xr-index on label tables nobody here has seen: other spellings, encodings and delimiters,
common column names, row selection and relabelling, absolute paths (issue 12, items 1-5).

Every fixture is a small table written here; the principle under test is that every row
becomes a correct record, or the user is told (counted, first FILE:LINE, --strict exits 1).
"""

import json

import pytest
from conftest import needs_commands, sh
from xrtools.index import main

from libxr.index.chexpert import OBSERVATIONS


def with_images(tmp_path, *names):
    """Create the images a table names, so that --strict fails only for what a test is about."""
    for name in names:
        (tmp_path / name).write_bytes(b"png")


# --- 1. CheXpert / NIH headers spelt another way --------------------------------------------

CHEXPERT_ROW = ("CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,"
                ",,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,1.0\n")
CHEXPERT_LABELS = {"Cardiomegaly": -1, "Lung Opacity": 1, "Edema": -1, "Consolidation": -1, "Atelectasis": -1,
                   "Pleural Effusion": -1, "Fracture": 1, "Support Devices": 1}


def chexpert_header(spell):
    return ",".join(spell(n) for n in ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA") + OBSERVATIONS) + "\n"


@pytest.mark.parametrize("spell", [
    pytest.param(lambda n: n, id="official"),
    pytest.param(lambda n: n.replace(" ", "_"), id="underscores"),
    pytest.param(str.lower, id="lower-case"),
    pytest.param(lambda n: f" {n.upper()}  ", id="upper-case-extra-spaces"),
    pytest.param(lambda n: n.replace(" ", ""), id="no-spaces"),
])
def test_chexpert_columns_spelt_any_way_keep_every_label(cli, tmp_path, spell):
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    (folder / "train.csv").write_text(chexpert_header(spell) + CHEXPERT_ROW)
    result = cli(main, folder)                      # detected as chexpert from the folder
    assert result.exit_code == 0, result.stderr
    record, = result.records
    assert record["labels"] == CHEXPERT_LABELS
    assert (record["view"], record["sex"], record["age"], record["split"]) == ("AP", "F", 87, "train")
    assert "labels from 14 columns" in result.stderr


@pytest.mark.parametrize("header, findings", [
    pytest.param("Image Index,Finding Labels,Patient ID,View Position", "Effusion|Pleural_Thickening",
                 id="official"),
    pytest.param("image_index,finding_labels,patient_id,view_position", "Effusion|Pleural_Thickening",
                 id="underscores"),
    pytest.param("IMAGE INDEX,finding labels,PatientID,view position", "effusion| pleural thickening",
                 id="case-spaces-and-finding-spellings"),
])
def test_nih_columns_and_findings_spelt_any_way(cli, tmp_path, header, findings):
    table = tmp_path / "labels.csv"
    table.write_text(f"{header}\n00000001_000.png,{findings},7,PA\n")
    result = cli(main, table)
    assert result.exit_code == 0, result.stderr
    record, = result.records
    assert {k for k, v in record["labels"].items() if v} == {"Effusion", "Pleural_Thickening"}
    assert len(record["labels"]) == 15 and (record["patient"], record["view"]) == ("7", "PA")
    assert "15 labels from column" in result.stderr


@pytest.mark.parametrize("text, args, took, ignored", [
    pytest.param(chexpert_header(str) .replace("\n", ",Hernia\n") + CHEXPERT_ROW.replace("\n", ",1\n"), [],
                 "labels from 14 columns", "'Hernia' holds only 1/0/-1/blank", id="chexpert"),
    pytest.param("Image Index,Finding Labels,Patient ID,View Position,Follow-up #,covid\n"
                 "1.png,Mass,7,PA,0,1\n2.png,No Finding,8,AP,1,0\n", [],
                 "15 labels from column 'Finding Labels'", "'covid' holds only", id="nih"),
    pytest.param("file,finding,covid,icu,notes\na.png,x,1,0,\nb.png,y,-1,,\n", [],
                 "label from 'finding'", "'covid', 'icu' hold only", id="csv-single-label"),
    pytest.param("file,a,b,c\na.png,1,0,1\n", ["--label-cols", "a,b"],
                 "labels from 'a', 'b'", "'c' holds only", id="csv-multi-label"),
])
def test_each_reader_says_which_columns_it_took_and_which_look_like_labels(cli, tmp_path, text, args,
                                                                           took, ignored):
    table = tmp_path / "t.csv"
    table.write_text(text)
    result = cli(main, table, *args)
    assert result.exit_code == 0, result.stderr
    assert took in result.stderr
    assert f"warning: {table}: {ignored}" in result.stderr


def test_columns_blank_throughout_or_with_other_values_are_not_label_like(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("file,finding,empty,count\na.png,x,,1\nb.png,y,,2\n")
    result = cli(main, table)
    assert result.exit_code == 0 and "hold" not in result.stderr


# --- 2. encodings, byte-order marks and delimiters ---------------------------------------------

ENCODINGS = {  # name: (bytes of the text, options needed)
    "cp1252": (lambda t: t.encode("cp1252"), ["--encoding", "cp1252"]),
    "latin-1": (lambda t: t.encode("latin-1"), ["--encoding", "latin-1"]),
    "utf-8-bom": (lambda t: t.encode("utf-8-sig"), []),
    "utf-16-bom": (lambda t: t.encode("utf-16"), []),      # Excel's "Unicode text"
    "utf-8-bom-over-option": (lambda t: t.encode("utf-8-sig"), ["--encoding", "cp1252"]),
}


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encodings_and_delimiters_in_detection_and_reading(cli, tmp_path, encoding, delimiter):
    encode, args = ENCODINGS[encoding]
    text = delimiter.join(["path", "diagnosis", "remarque é"]) + "\n" + delimiter.join(
        ["img/é.png", "épanchement", "vu"]) + "\n"
    table = tmp_path / "labels.csv"
    table.write_bytes(encode(text))
    result = cli(main, table, *args)
    assert result.exit_code == 0, result.stderr
    record, = result.records
    assert (record["id"], record["label"]) == ("img/é.png", "épanchement")
    assert record["source"]["remarque é"] == "vu"


def test_nih_table_in_cp1252_is_detected_with_the_encoding_given(cli, tmp_path):
    table = tmp_path / "Data_Entry_2017.csv"
    table.write_bytes("Image Index;Finding Labels;Patient ID;View Position;Befund é\n"
                      "1.png;Mass;7;PA;dünn\n".encode("cp1252"))
    before = cli(main, table)
    assert before.exit_code == 1 and f"{table}:1: not utf-8 text" in before.stderr
    result = cli(main, table, "--encoding", "cp1252")
    assert result.exit_code == 0, result.stderr
    assert result.records[0]["labels"]["Mass"] == 1 and result.records[0]["source"]["Befund é"] == "dünn"


@pytest.mark.parametrize("args, message", [
    pytest.param([], "t.csv:3: not utf-8 text (byte 0xe9); pass --encoding, e.g. --encoding cp1252",
                 id="default-suggests-the-option"),
    pytest.param(["--encoding", "ascii"], "t.csv:3: not ascii text (byte 0xe9); the file is not in --encoding ascii",
                 id="given-does-not-suggest-it-again"),
    pytest.param(["--encoding", "cp1252"], "t.csv:3: not cp1252 text (byte 0x81); the file is not in --encoding "
                 "cp1252", id="named-as-given-not-as-the-codec-calls-itself"),
])
def test_undecodable_bytes_name_the_line(cli, tmp_path, args, message):
    table = tmp_path / "t.csv"
    table.write_bytes(b"path,label\na.png,x\n" + "b.png,é".encode("cp1252") + b"\x81\n")
    result = cli(main, table, *args)
    assert result.exit_code == 1 and message in result.stderr


@pytest.mark.parametrize("args, message", [
    pytest.param(["--encoding", "klingon"], "--encoding klingon: not an encoding Python knows", id="encoding"),
    pytest.param(["--delimiter", "::"], "'::' is not one character", id="delimiter"),
])
def test_bad_encoding_or_delimiter_is_a_usage_error(cli, tmp_path, args, message):
    table = tmp_path / "t.csv"
    table.write_text("path,label\na.png,x\n")
    result = cli(main, table, *args)
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.parametrize("spelling", ["tab", "\\t", "\t"])
def test_delimiter_tab_spelt_any_way(cli, tmp_path, spelling):
    table = tmp_path / "t.csv"
    table.write_text("path\tlabel\tnotes, remarks, more\na.png\tx,y\tz\n")   # as many commas as tabs
    record, = cli(main, table, "--delimiter", spelling).records
    assert (record["label"], record["source"]["notes, remarks, more"]) == ("x,y", "z")


# --- 3. common column names, and every field of the contract ----------------------------------

@pytest.mark.parametrize("header", [
    pytest.param("imagename,diagnosis,Patientid,gender,age,projection,study", id="imagename-diagnosis"),
    pytest.param("filename,finding,patient_id,sex,Age,view,Study", id="filename-finding"),
    pytest.param("Image Index,Finding,PATIENT ID,Patient Gender,Patient Age,View Position,study_id",
                 id="spaces-and-capitals"),
    pytest.param("file_path,class,Subject,SEX,AGE,View_Position,STUDY", id="more-synonyms"),
])
def test_common_column_names_fill_every_field(cli, tmp_path, header):
    table = tmp_path / "t.csv"
    table.write_text(f"{header}\na.png,COVID-19,p1,female,57,PA,s1\n")
    result = cli(main, table)
    assert result.exit_code == 0, result.stderr
    record, = result.records
    assert {k: record[k] for k in ("id", "label", "patient", "sex", "age", "view", "study")} == {
        "id": "a.png", "label": "COVID-19", "patient": "p1", "sex": "F", "age": 57, "view": "PA", "study": "s1"}
    assert record["source"] == {"table": "t.csv", "line": 2}


def test_options_name_columns_of_any_name(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("bild,befund,geschlecht,alter,seite,gruppe,teil\na.png,x,W,61,PA,g1,train\n")
    record, = cli(main, table, "--path-col", "bild", "--label-col", "befund", "--sex-col", "geschlecht",
                  "--age-col", "alter", "--view-col", "seite", "--group-col", "gruppe",
                  "--split-col", "teil").records
    assert {k: record[k] for k in ("label", "sex", "age", "view", "group", "split")} == {
        "label": "x", "sex": "F", "age": 61, "view": "PA", "group": "g1", "split": "train"}


@pytest.mark.parametrize("column, cell, expected", [
    pytest.param("sex", "F", "F", id="sex-F"), pytest.param("sex", "f", "F", id="sex-f"),
    pytest.param("sex", "Female", "F", id="sex-Female"), pytest.param("sex", " WOMAN ", "F", id="sex-woman"),
    pytest.param("sex", "M", "M", id="sex-M"), pytest.param("sex", "male", "M", id="sex-male"),
    pytest.param("sex", "MALE", "M", id="sex-MALE"), pytest.param("sex", "", None, id="sex-blank"),
    pytest.param("sex", "Unknown", None, id="sex-unknown"), pytest.param("sex", "n/a", None, id="sex-n-a"),
    pytest.param("age", "57", 57, id="age-integer"), pytest.param("age", "057Y", 57, id="age-dicom-years"),
    pytest.param("age", "57.9", 57, id="age-decimal"), pytest.param("age", "6M", 0, id="age-dicom-months"),
    pytest.param("age", "57 years", 57, id="age-words"), pytest.param("age", "", None, id="age-blank"),
])
def test_sex_and_age_become_the_contracts_values(cli, tmp_path, column, cell, expected):
    """sex: F or M; age: whole years; cells that state nothing give no field, and no warning."""
    table = tmp_path / "t.csv"
    table.write_text(f"file,label,{column}\na.png,x,{cell}\n")
    with_images(tmp_path, "a.png")
    result = cli(main, table, "--strict")
    assert result.exit_code == 0, result.stderr
    assert result.records[0].get(column) == expected


@pytest.mark.parametrize("column, bad, why", [
    pytest.param("sex", "O", "sex that is not F or M", id="sex"),
    pytest.param("age", "adult", "age that is not a number of years", id="age"),
    pytest.param("age", "²", "age that is not a number of years", id="age-superscript-digit"),
])
def test_values_that_cannot_be_read_are_counted_with_their_line_and_strict_fails(cli, tmp_path, column,
                                                                                 bad, why):
    table = tmp_path / "t.csv"
    table.write_text(f"file,label,{column}\na.png,x,\nb.png,x,{bad}\nc.png,x,{bad}\n")
    with_images(tmp_path, "a.png", "b.png", "c.png")
    assert cli(main, table, "--strict", "--where", f"{column}=").exit_code == 0
    result = cli(main, table)
    assert result.exit_code == 0 and len(result.records) == 3
    assert all(column not in r for r in result.records)
    assert f"warning: 2 × {why}, left out (first {table}:3: {bad!r})" in result.stderr
    assert cli(main, table, "--strict").exit_code == 1


def test_sex_from_a_table_feeds_xr_eval_by_sex(cli, tmp_path):
    from xrtools.eval import main as evaluate

    table = tmp_path / "t.csv"
    table.write_text("filename,finding,gender\na.png,covid,female\nb.png,other,M\nc.png,covid,Male\n"
                     "d.png,other,f\n")
    scored = tmp_path / "scored.jsonl"
    with scored.open("w") as out:
        for rec in cli(main, table).records:
            p = 0.9 if rec["label"] == "covid" else 0.2
            out.write(json.dumps(dict(rec, scores={"covid": p, "other": 1 - p}, split="test")) + "\n")
    result = cli(evaluate, scored, "--by", "sex", "--positive", "covid")
    assert result.exit_code == 0, result.stderr
    by_sex = result.stderr.split("by sex")[1]
    rows = [[cell.strip() for cell in line.split("│")[1:3]] for line in by_sex.splitlines() if line.startswith("│")]
    assert rows == [["F", "2"], ["M", "2"]]


# --- 4. --where selects rows, --map relabels ---------------------------------------------------

COVID = ("patientid,offset,sex,age,finding,view,modality,filename\n"
         "1,5,M,65,COVID-19,PA,X-ray,a.png\n"
         "2,,F,50,Pneumonia,AP,X-ray,b.png\n"
         "3,,F,40,COVID-19,Axial,CT,c.png\n"
         "4,,M,30,No Finding,PA,X-ray,d.png\n")


@pytest.fixture
def covid_table(tmp_path):
    table = tmp_path / "metadata.csv"
    table.write_text(COVID)
    return table


@pytest.mark.parametrize("where, lines, left_out", [
    pytest.param(["modality=X-ray"], [2, 3, 5], 1, id="equals"),
    pytest.param(["Modality=X-ray"], [2, 3, 5], 1, id="column-any-case"),
    pytest.param(["modality!=X-ray"], [4], 3, id="not-equal"),
    pytest.param(["finding=COVID-19,Pneumonia"], [2, 3, 4], 1, id="several-values"),
    pytest.param(["finding!=COVID-19,Pneumonia"], [5], 3, id="none-of-several"),
    pytest.param(["modality=X-ray", "finding=COVID-19"], [2], 3, id="all-conditions-hold"),
    pytest.param(["offset="], [3, 4, 5], 1, id="blank-cell"),
    pytest.param(["view=Lateral"], [], 4, id="nothing-selected"),
])
def test_where_selects_source_rows_and_counts_the_rest(cli, covid_table, where, lines, left_out):
    args = [a for w in where for a in ("--where", w)]
    result = cli(main, covid_table, *args)
    assert [r["source"]["line"] for r in result.records] == lines
    assert f"skipped {left_out:,} × row left out by --where" in result.stderr
    assert result.exit_code == (0 if lines else 1)


def test_covid_against_everything_else_in_xray_rows_is_one_call(cli, covid_table):
    result = cli(main, covid_table, "--where", "modality=X-ray", "--map", "COVID-19=covid", "--map", "*=other")
    assert result.exit_code == 0, result.stderr
    assert [(r["id"], r["label"]) for r in result.records] == [("a.png", "covid"), ("b.png", "other"),
                                                               ("d.png", "other")]


@pytest.mark.parametrize("args, status, message", [
    pytest.param(["--where", "colour=red"], 2, "--where colour: no such column; columns are 'patientid'",
                 id="unknown-column"),
    pytest.param(["--where", "modality"], 2, "'modality' is not COL=VALUE or COL!=VALUE", id="no-value"),
    pytest.param(["--map", "COVID-19"], 2, "is not FROM=TO", id="map-without-to"),
])
def test_bad_where_or_map_is_a_usage_error(cli, covid_table, args, status, message):
    result = cli(main, covid_table, *args)
    assert result.exit_code == status and message in result.stderr


def test_where_on_a_folder_is_a_usage_error(cli, synth):
    result = cli(main, synth("folders", count=20), "--where", "split=train")
    assert result.exit_code == 2
    assert "selects rows of a table with a header row (chexpert, nih, csv layouts)" in result.stderr


def test_map_warns_about_a_name_no_record_has(cli, covid_table):
    result = cli(main, covid_table, "--map", "COVID19=covid")
    assert result.exit_code == 0
    assert "warning: --map COVID19=covid: no record has the label 'COVID19'" in result.stderr


@pytest.mark.parametrize("maps, expected", [
    pytest.param(["Effusion=Pleural Effusion"], {"Pleural Effusion": 1, "Mass": 0, "Edema": -1}, id="rename"),
    pytest.param(["Effusion=fluid", "Edema=fluid"], {"fluid": 1, "Mass": 0}, id="merge-keeps-positive"),
    pytest.param(["Mass=lesion", "*=other"], {"lesion": 0, "other": 1}, id="fallback-merges-the-rest"),
    pytest.param(["Effusion=other", "Mass=other"], {"other": 1, "Edema": -1}, id="positive-beats-negative"),
    pytest.param(["Mass=x", "Edema=x"], {"Effusion": 1, "x": -1}, id="uncertain-beats-negative"),
])
def test_map_renames_multi_label_names_keeping_the_strongest_value(cli, tmp_path, maps, expected):
    table = tmp_path / "t.csv"
    table.write_text("file,Effusion,Mass,Edema\na.png,1,0,-1\n")
    args = [a for m in maps for a in ("--map", m)]
    record, = cli(main, table, "--label-cols", "Effusion,Mass,Edema", *args).records
    assert record["labels"] == expected


def test_nih_and_chexpert_pool_into_one_split_once_aligned(synth, tmp_path):
    needs_commands()
    nih, chexpert = synth("nih", count=40), synth("chexpert", count=40)
    result = sh(f"xr-index {nih} -q > nih-as-is.jsonl && "
                f"xr-index {nih} --map Effusion='Pleural Effusion' -q > nih.jsonl && "
                f"xr-index {chexpert} -q > chexpert.jsonl && "
                "cat nih.jsonl chexpert.jsonl | xr-split --val 0.2 --test 0.2 --resplit -q", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    pooled = result.records
    assert len(pooled) == 80 and {r["split"] for r in pooled} == {"train", "val", "test"}
    assert all("Effusion" not in r["labels"] for r in pooled)

    def positives(name, label):
        return sum(json.loads(line)["labels"].get(label) == 1
                   for line in (tmp_path / name).read_text().splitlines())

    effusions = positives("nih-as-is.jsonl", "Effusion")
    assert effusions > 0 and positives("chexpert.jsonl", "Pleural Effusion") > 0
    assert sum(r["labels"].get("Pleural Effusion") == 1 for r in pooled) == (
        effusions + positives("chexpert.jsonl", "Pleural Effusion"))


# --- 5. absolute paths: --strip-prefix, --root, and what the missing-file warning says -------

@pytest.fixture
def absolute_chexpert(tmp_path):
    table = tmp_path / "train.csv"
    table.write_text(chexpert_header(str) + CHEXPERT_ROW.replace(
        "CheXpert-v1.0-small/", "/data/CheXpert/", 1))
    image = tmp_path / "images" / "train" / "patient00002" / "study2" / "view1_frontal.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"jpg")
    return table


@pytest.mark.parametrize("prefix", ["/data/CheXpert/", "/data/CheXpert"])
def test_strip_prefix_and_root_rebase_absolute_paths_with_relative_ids(cli, absolute_chexpert, prefix):
    images = absolute_chexpert.parent / "images"
    result = cli(main, absolute_chexpert, "--strip-prefix", prefix, "--root", images, "--strict")
    assert result.exit_code == 0, result.stderr
    record, = result.records
    assert record["id"] == "train/patient00002/study2/view1_frontal.jpg"
    assert record["path"] == f"{images}/train/patient00002/study2/view1_frontal.jpg"
    assert (record["patient"], record["split"]) == ("patient00002", "train")
    assert "do not exist" not in result.stderr


@pytest.mark.parametrize("args, hint", [
    pytest.param([], "the table's paths are absolute: --strip-prefix PREFIX --root DIR rebases them",
                 id="absolute-no-root"),
    pytest.param(["--root", "{tmp}/images"], "the table's paths are absolute: --strip-prefix",
                 id="absolute-with-root"),
    pytest.param(["--strip-prefix", "/data/CheXpert/"], "--root says where they are",
                 id="stripped-no-root"),
    pytest.param(["--strip-prefix", "/data/CheXpert/", "--root", "{tmp}/elsewhere"],
                 "they were looked for under --root {tmp}/elsewhere", id="stripped-wrong-root"),
])
def test_missing_file_warning_suggests_what_was_not_given(cli, absolute_chexpert, args, hint):
    tmp = absolute_chexpert.parent
    args = [a.format(tmp=tmp) for a in args]
    result = cli(main, absolute_chexpert, *args)
    assert result.exit_code == 0
    warning = next(line for line in result.stderr.splitlines() if "do not exist" in line)
    assert hint.format(tmp=tmp) in warning
    if "--root" in args:
        assert "--root says where they are" not in warning
    assert cli(main, absolute_chexpert, *args, "--strict").exit_code == 1


def test_absolute_paths_root_cannot_rebase_are_counted_by_line(cli, absolute_chexpert):
    result = cli(main, absolute_chexpert, "--root", absolute_chexpert.parent / "images")
    assert (f"warning: 1 × absolute path that --root does not rebase (--strip-prefix removes its start) "
            f"(first {absolute_chexpert}:2: '/data/CheXpert/train/") in result.stderr


def test_paths_outside_the_prefix_are_counted_by_line(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("path,label\n/data/x/a.png,n\nother/b.png,n\n")
    (tmp_path / "other").mkdir()
    with_images(tmp_path, "a.png", "other/b.png")
    args = [table, "--strip-prefix", "/data/x", "--root", tmp_path, "--strict"]
    result = cli(main, *args)
    assert [r["id"] for r in result.records] == ["a.png", "other/b.png"]
    assert f"1 × path does not start with --strip-prefix /data/x/, kept as it is (first {table}:3:" in result.stderr
    assert result.exit_code == 1
    assert cli(main, *args, "--where", "path=/data/x/a.png").exit_code == 0
