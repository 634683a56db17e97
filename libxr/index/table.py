"""Reading label tables (CSV/TSV) row by row with errors that name file and line."""

import csv
import os

from libxr.errors import ManifestError, XRError


class Table:
    """A delimited text file: ``header`` (list of names) and ``rows()`` of (line, cells).

    Streams rows, so memory stays flat however large the file is. ``header=False``
    means the file has no header row; ``names`` then label the columns.
    """

    def __init__(self, path, encoding="utf-8", delimiter=None, header=True, names=None):
        self.path = path
        self.encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        self.delimiter = delimiter or self._sniff_delimiter()
        self.has_header = header
        self.header = names or []
        if header:
            first = self._first_row()
            if first is None:
                raise XRError(f"{path}: empty file, expected a header row")
            self.header = fix_bracketed_names(first)

    def _open(self):
        return open(self.path, newline="", encoding=self.encoding)

    def _bad_line(self):
        """The first line that does not decode: a text stream decodes 8 KiB at a time,
        so its error cannot name the line; this rescan (on the error path only) can."""
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    raw.decode(self.encoding)
                except UnicodeDecodeError:
                    return lineno
        return 1

    def _sniff_delimiter(self):
        if os.path.splitext(self.path)[1].lower() in (".tsv", ".tab"):
            return "\t"
        with self._open() as f:
            try:
                line = f.readline()
            except UnicodeDecodeError as exc:
                raise _row_error(self.path, self._bad_line(), exc) from None
        return "\t" if line.count("\t") > line.count(",") else ","

    def _first_row(self):
        for _, row in self.rows(skip_header=False):
            return row
        return None

    def column(self, name, option=None):
        """Position of column ``name``; a missing one is an error naming column and file."""
        try:
            return self.header.index(name)
        except ValueError:
            hint = f" (set {option})" if option else ""
            shown = ", ".join(repr(h) for h in self.header[:20])
            raise XRError(f"{self.path}: no column {name!r}{hint}; columns are {shown}") from None

    def rows(self, skip_header=True):
        """Yield (line number, list of cells); blank lines are skipped."""
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            try:
                if skip_header and self.has_header:
                    next(reader, None)
                for row in reader:
                    if row:
                        yield reader.line_num, row
            except UnicodeDecodeError as exc:
                raise _row_error(self.path, self._bad_line(), exc) from None
            except csv.Error as exc:
                raise _row_error(self.path, reader.line_num, exc) from None

    def too_short(self, lineno, row):
        """The error for a row with fewer cells than the columns a reader needs."""
        return ManifestError(self.path, lineno, f"{len(row)} cells, the header has {len(self.header)}")


def _row_error(path, lineno, exc):
    if isinstance(exc, UnicodeDecodeError):
        return ManifestError(path, lineno, f"not {exc.encoding} text (byte 0x{exc.object[exc.start]:02x}); "
                                           "pass --encoding, e.g. --encoding cp1252")
    return ManifestError(path, lineno, f"bad CSV: {exc}")


def fix_bracketed_names(names):
    """Rejoin header names that carry unquoted commas inside brackets.

    NIH's 2020 ``Data_Entry_2017_v2020.csv`` writes ``OriginalImage[Width,Height]``
    unquoted, which a CSV reader splits in two. Each bracket group becomes one
    name per value (``OriginalImage[Width]``, ``OriginalImage[Height]``), so the
    header keeps the data rows' width and every name is whole.
    """
    fixed, pending = [], None
    for name in names:
        if pending is not None:
            pending.append(name)
            if "]" in name:
                prefix, _, first = pending[0].partition("[")
                items = [first] + pending[1:]
                items[-1] = items[-1].rstrip("]")
                fixed.extend(f"{prefix}[{item.strip()}]" for item in items)
                pending = None
        elif "[" in name and "]" not in name:
            pending = [name]
        else:
            fixed.append(name.strip())
    if pending is not None:
        fixed.extend(pending)
    return fixed
