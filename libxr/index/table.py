"""Reading label tables (CSV/TSV) row by row with errors that name file and line.

The encoding is the user's (``--encoding``) unless the file starts with a byte-order
mark, which says what it is (Excel's "Unicode text" is UTF-16 with one); the delimiter
is the one of ``,`` ``;`` tab ``|`` the header line uses most.
"""

import codecs
import csv
import os
import re

from libxr.errors import ManifestError, UsageError, XRError
from libxr.index.columns import canon
from libxr.index.select import Where

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
DELIMITERS = (",", ";", "\t", "|")
_QUOTED = re.compile(r'"[^"]*"')


class Table:
    """A delimited text file: ``header`` (list of names) and ``rows()`` of (line, cells).

    Streams rows, so memory stays flat however large the file is. ``header=False``
    means the file has no header row; ``names`` then label the columns.
    """

    def __init__(self, path, encoding="utf-8", delimiter=None, header=True, names=None):
        self.path = path
        self.encoding = _encoding(path, encoding)
        self.keep = None  # a row filter (--where): row -> bool
        self.used = None  # the columns the reader makes fields of: no line break belongs in them
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
        so its error cannot name the line; this rescan (on the error path only) can,
        in any encoding (UTF-16 has no byte-wise lines), byte by byte in the bad block."""
        decoder = codecs.getincrementaldecoder(self.encoding)()
        line = 1
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                state = decoder.getstate()
                try:
                    line += decoder.decode(block).count("\n")
                    continue
                except UnicodeDecodeError:
                    decoder.setstate(state)
                for i in range(len(block)):
                    try:
                        line += decoder.decode(block[i:i + 1]).count("\n")
                    except UnicodeDecodeError:
                        return line
        return line

    def _sniff_delimiter(self):
        if os.path.splitext(self.path)[1].lower() in (".tsv", ".tab"):
            return "\t"
        with self._open() as f:
            try:
                line = f.readline()
            except UnicodeDecodeError as exc:
                raise _row_error(self, self._bad_line(), exc) from None
        line = _QUOTED.sub("", line)
        return max(DELIMITERS, key=line.count)  # ties go to the first, the comma

    def _first_row(self):
        for _, row in self.rows(skip_header=False):
            return row
        return None

    def column(self, name, option=None):
        """Position of column ``name``, spelt as in the header or any other way (:func:`canon`);
        a missing one is an error naming column and file."""
        if name in self.header:
            return self.header.index(name)
        keys = [canon(h) for h in self.header]
        if canon(name) in keys:
            return keys.index(canon(name))
        hint = f" (set {option})" if option else ""
        shown = ", ".join(repr(h) for h in self.header[:20])
        raise XRError(f"{self.path}: no column {name!r}{hint}; columns are {shown}")

    def rows(self, skip_header=True):
        """Yield (line the row starts on, list of cells); blank lines and rows ``keep`` refuses are skipped.

        A row with more cells than the header (an unquoted comma in a label) is an error, as one with
        too few is for the readers; so is a quote left open, which swallows the rows after it into one
        cell (:meth:`_broken`).
        """
        keep, width = self.keep, len(self.header) if self.has_header and skip_header else None
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            try:
                if skip_header and self.has_header:
                    next(reader, None)
                end = reader.line_num
                for row in reader:
                    start, end = end + 1, reader.line_num
                    if not row:
                        continue
                    if width is not None and len(row) > width and any(c.strip() for c in row[width:]):
                        raise ManifestError(self.path, start, f"{len(row)} cells, the header has {width} "
                                            "(a delimiter inside a cell needs quotes)")
                    if end > start and skip_header:
                        self._broken(start, end, row)
                    if keep is None or keep(row):
                        yield start, row
            except UnicodeDecodeError as exc:
                raise _row_error(self, self._bad_line(), exc) from None
            except csv.Error as exc:
                raise _row_error(self, reader.line_num, exc) from None

    def _broken(self, start, end, row):
        """A row over lines ``start``..``end``: an error if a cell the reader uses (``used``) holds the
        line break (no path, label or id has one), or if a line of the cell looks like a row of its own
        (as many delimiters as the header has, less one): a quote left open swallowed it. Free text
        over several lines in a column xr only keeps (a report, a note) is valid CSV, and stays."""
        delimiters = max(1, len(self.header) - 1)
        for i, cell in enumerate(row):
            if "\n" not in cell and "\r" not in cell:
                continue
            used = self.used is None or i in self.used
            if used or any(line.count(self.delimiter) >= delimiters for line in cell.splitlines()[1:]):
                name = self.header[i] if i < len(self.header) else f"column {i + 1}"
                raise ManifestError(self.path, start, f"the {name!r} cell runs over lines {start}-{end}: "
                                                      "a quote left open?")

    def too_short(self, lineno, row):
        """The error for a row with fewer cells than the columns a reader needs."""
        return ManifestError(self.path, lineno, f"{len(row)} cells, the header has {len(self.header)}")


def open_table(path, opts, tally, header=True):
    """The table at ``path`` as the user asked: ``--encoding``, ``--delimiter``, and only the
    rows ``--where`` selects (the others counted in ``tally``)."""
    table = Table(path, encoding=opts.encoding, delimiter=opts.delimiter, header=header)
    table.keep = Where(opts.where, tally).bind(table)
    return table


def _encoding(path, given):
    """The file's byte-order mark decides; else ``given`` (UTF-8 read so that a BOM is dropped)."""
    try:
        with open(path, "rb") as f:
            start = f.read(4)
    except OSError:
        start = b""
    for bom, name in BOMS:
        if start.startswith(bom):
            return name
    try:
        known = codecs.lookup(given).name
    except LookupError:
        raise UsageError(f"--encoding {given}: not an encoding Python knows") from None
    return "utf-8-sig" if known == "utf-8" else given


def _row_error(table, lineno, exc):
    if isinstance(exc, UnicodeDecodeError):
        name = table.encoding.replace("-sig", "")   # as the user wrote it (a codec may call itself "charmap")
        hint = ("pass --encoding, e.g. --encoding cp1252" if name in ("utf-8", "utf8")
                else f"the file is not in --encoding {name}")
        return ManifestError(table.path, lineno, f"not {name} text (byte 0x{exc.object[exc.start]:02x}); {hint}")
    return ManifestError(table.path, lineno, f"bad CSV: {exc}")


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
