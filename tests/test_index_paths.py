"""libxr.index.paths: table paths to ids and paths, existence checks, patient ids."""

import os

import pytest

from libxr.errors import UsageError
from libxr.index.paths import ExistenceCache, FromName, TablePaths, Tally


@pytest.mark.parametrize("table, root, cell, expected", [
    pytest.param("data/CheXpert-v1.0-small/train.csv", None, "CheXpert-v1.0-small/train/p1/s1/v.jpg",
                 ("train/p1/s1/v.jpg", "data/CheXpert-v1.0-small/train/p1/s1/v.jpg"),
                 id="cell-starting-with-the-table-folder"),
    pytest.param("data/labels.csv", None, "img/a.png", ("img/a.png", "data/img/a.png"),
                 id="relative-to-the-table"),
    pytest.param("labels.csv", None, "./img/a.png", ("img/a.png", "img/a.png"), id="dot-slash-table-in-cwd"),
    pytest.param("data/labels.csv", "/images", "img\\a.png", ("img/a.png", "/images/img/a.png"),
                 id="root-and-backslashes"),
    pytest.param("data/labels.csv", None, "/abs/a.png", ("/abs/a.png", "/abs/a.png"), id="absolute-path"),
    pytest.param("data/CheXpert-v1.0-small/train.csv", "/images", "CheXpert-v1.0-small/train/p1/v.jpg",
                 ("train/p1/v.jpg", "/images/CheXpert-v1.0-small/train/p1/v.jpg"),
                 id="root-keeps-the-id-without-the-table-folder"),
])
def test_table_paths(table, root, cell, expected):
    assert TablePaths(table, root)(cell) == expected


@pytest.mark.parametrize("root, strip, cell, expected, problem", [
    pytest.param("/images", "/data/CheXpert/", "/data/CheXpert/train/p1/v.jpg",
                 ("train/p1/v.jpg", "/images/train/p1/v.jpg"), None, id="absolute-rebased"),
    pytest.param(None, "/data/CheXpert", "/data/CheXpert/train/p1/v.jpg",
                 ("train/p1/v.jpg", "d/train/p1/v.jpg"), None, id="stripped-then-from-the-table"),
    pytest.param("/images", "C:\\data", "C:\\data\\train\\v.jpg", ("train/v.jpg", "/images/train/v.jpg"), None,
                 id="windows-drive-path"),
    pytest.param(None, "/data/CheXpert", "/data/CheXpert-v1.0/v.jpg",
                 ("/data/CheXpert-v1.0/v.jpg", "/data/CheXpert-v1.0/v.jpg"), "does not start with",
                 id="prefix-only-at-a-folder-boundary"),
    pytest.param("/images", None, "/data/v.jpg", ("/data/v.jpg", "/data/v.jpg"), "--root does not rebase",
                 id="absolute-not-rebased-is-counted"),
    pytest.param("/images", None, "C:/data/v.jpg", ("C:/data/v.jpg", "C:/data/v.jpg"), "--root does not rebase",
                 id="windows-absolute-not-rebased-is-counted"),
])
def test_strip_prefix(root, strip, cell, expected, problem):
    tally = Tally()
    assert TablePaths("d/t.csv", root, strip, tally)(cell, 7) == expected
    counted = [(why, where) for why, (_, where, _) in tally.problems.items()]
    if problem is None:
        assert counted == []
    else:
        (why, where), = counted
        assert problem in why and where == "d/t.csv:7"


def test_table_in_cwd_named_like_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "MURA-v1.1"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert TablePaths("valid.csv")("MURA-v1.1/valid/x.png") == ("valid/x.png", "../MURA-v1.1/valid/x.png")


def test_existence_cache(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    exists = ExistenceCache(size=1)
    assert exists(str(tmp_path / "a" / "x.png"))
    assert not exists(str(tmp_path / "a" / "y.png"))
    assert not exists(str(tmp_path / "gone" / "deep" / "z.png"))
    assert exists.absent == [str(tmp_path / "gone") + os.sep]
    assert not exists(str(tmp_path / "gone" / "other" / "z.png"))  # answered from the prefix
    assert exists(str(tmp_path / "a" / "x.png"))  # listing evicted and read again


@pytest.mark.parametrize("pattern, name, patient", [
    pytest.param(r"person(\d+)_", "train/PNEUMONIA/person1000_bacteria_2931.jpeg", "1000",
                 id="group-captures"),
    pytest.param(r"(person\d+|IM-\d+)", "NORMAL/IM-0115-0001.jpeg", "IM-0115", id="alternatives-in-a-group"),
    pytest.param(r"IM-\d+", "x/IM-0115-0001.jpeg", "IM-0115", id="whole-match-without-group"),
    pytest.param(r"person(\d+)_", "NORMAL/IM-0115-0001.jpeg", None, id="no-match"),
    pytest.param(r"person(\d+)", "person7/other_name.png", None,   # the file name only, not folders
                 id="folder-names-not-searched"),
])
def test_patient_from_name(pattern, name, patient):
    assert FromName(pattern)(name) == patient


def test_bad_regex():
    with pytest.raises(UsageError, match="--patient-regex"):
        FromName("(")
