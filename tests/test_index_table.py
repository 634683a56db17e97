"""libxr.index.table: headers, delimiters, encodings, bracketed NIH names."""

import pytest

from libxr.errors import ManifestError, XRError
from libxr.index.table import Table, fix_bracketed_names


@pytest.mark.parametrize("names, fixed", [
    pytest.param(["a", "b"], ["a", "b"], id="plain-names"),
    pytest.param(["OriginalImage[Width", "Height]", "x"],
                 ["OriginalImage[Width]", "OriginalImage[Height]", "x"], id="bracket-split-over-two"),
    pytest.param(["P[x", "y", "z]"], ["P[x]", "P[y]", "P[z]"], id="bracket-split-over-three"),
    pytest.param(["Spacing[x,y]"], ["Spacing[x,y]"], id="bracket-in-one-name"),
    pytest.param(["open[x", "y"], ["open[x", "y"], id="unclosed-bracket"),
    pytest.param([" a ", ""], ["a", ""], id="spaces-stripped"),
])
def test_fix_bracketed_names(names, fixed):
    assert fix_bracketed_names(names) == fixed


def test_delimiter_sniffing_and_blank_lines(tmp_path):
    tsv = tmp_path / "t.txt"
    tsv.write_text("a\tb\n1\t2\n\n3\t4\n")
    table = Table(str(tsv))
    assert table.header == ["a", "b"]
    assert list(table.rows()) == [(2, ["1", "2"]), (4, ["3", "4"])]


def test_utf8_bom_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffPath,label\nx,1\n".encode("utf-8"))
    assert Table(str(path)).header == ["Path", "label"]


def test_encoding_error_names_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" + b"x,y\n" * 5000 + "é,z\n".encode("cp1252"))
    with pytest.raises(ManifestError) as err:
        list(Table(str(path)).rows())
    assert str(err.value).startswith(f"{path}:5002: not utf-8 text (byte 0xe9)")
    assert list(Table(str(path), encoding="cp1252").rows())[-1] == (5002, ["é", "z"])


def test_empty_file_and_missing_column(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(XRError, match="empty file"):
        Table(str(empty))
    path = tmp_path / "t.csv"
    path.write_text("a,b\n")
    with pytest.raises(XRError, match=r"t.csv: no column 'c' \(set --path-col\); columns are 'a', 'b'"):
        Table(str(path)).column("c", "--path-col")


@pytest.mark.parametrize("first_line, delimiter", [
    pytest.param("a,b;c", ",", id="tie-goes-to-the-comma"),
    pytest.param("a;b;c,d", ";", id="semicolons"),
    pytest.param("a|b|c", "|", id="pipes"),
    pytest.param('"x;y;z",b', ",", id="delimiters-inside-quotes-do-not-count"),
    pytest.param("path", ",", id="one-column"),
])
def test_delimiter_is_the_one_the_header_uses_most(tmp_path, first_line, delimiter):
    path = tmp_path / "t.csv"
    path.write_text(first_line + "\n")
    assert Table(str(path)).delimiter == delimiter


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_undecodable_line_found_in_a_two_byte_encoding(tmp_path, encoding):
    path = tmp_path / "t.csv"
    good = ("a,b\n" + "x,y\n" * 40000).encode(encoding)      # past the first 64 KiB block
    path.write_bytes(good + b"\x00\xd8" + "z\n".encode("utf-16-le"))   # a lone surrogate on line 40002
    with pytest.raises(ManifestError, match=r":40002: not utf-16"):
        list(Table(str(path), encoding=encoding).rows())
