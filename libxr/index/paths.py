"""Paths and ids of indexed images, and the file facts gathered while indexing."""

import collections
import os
import re

from libxr.errors import ManifestError, UsageError
from libxr.pixels.files import is_image_name

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}
"""Split folder or column names as found in the wild, mapped to the manifest's three."""


def posix(path):
    return path.replace(os.sep, "/") if os.sep != "/" else path


class TablePaths:
    """Turns a label table's path cell into ``(id, path)``.

    Tables such as CheXpert's or MURA's name images from the folder *above* the
    dataset (``CheXpert-v1.0-small/train/...``); when the first component is the
    table's own folder, paths are resolved from its parent and the id drops that
    component (with ``root`` too), so indexing the CSV or the tree gives the same ids. Paths stay
    relative when the user named the table relatively, like ``find``.

    ``strip`` (``--strip-prefix``) is taken off the start of every cell first, so a
    table of absolute paths (``/data/CheXpert/train/...``) gives relative, stable ids
    and is rebased by ``root``. A cell it does not start, or an absolute one that
    ``root`` cannot rebase, is kept as it is and counted in ``tally`` by line.
    """

    def __init__(self, table_path, root=None, strip=None, tally=None):
        self.table_path = table_path
        table_dir = os.path.dirname(table_path)
        self.dataset_name = os.path.basename(os.path.abspath(table_dir or "."))
        self.table_prefix = _prefix(table_dir)
        self.parent_prefix = _prefix(os.path.normpath(os.path.join(table_dir or ".", "..")))
        self.root_prefix = None if root is None else _prefix(root)
        self.dataset_prefix = self.dataset_name + "/"
        self.strip = None if strip is None else tidy(strip.replace("\\", "/")).rstrip("/") + "/"
        self.tally = tally

    def __call__(self, value, line=None):
        value = value.strip()
        if "\\" in value:
            value = value.replace("\\", "/")
        if "//" in value or "./" in value:
            value = tidy(value)
        if self.strip is not None:
            if value.startswith(self.strip):
                value = value[len(self.strip):].lstrip("/")
            elif value:
                self._kept(f"path does not start with --strip-prefix {self.strip}, kept as it is", line, value)
        if is_absolute(value):
            if self.root_prefix is not None and self.strip is None:
                self._kept("absolute path that --root does not rebase (--strip-prefix removes its start)",
                           line, value)
            return value, value
        in_dataset = value.startswith(self.dataset_prefix)
        image_id = value[len(self.dataset_prefix):] if in_dataset else value
        if not image_id.strip("/"):
            raise ManifestError(self.table_path, line, "empty path cell")
        if self.root_prefix is not None:
            return image_id, self.root_prefix + value
        if in_dataset:
            return image_id, self.parent_prefix + value
        return value, self.table_prefix + value

    def _kept(self, why, line, value):
        if self.tally is not None:
            self.tally.problem(why, f"{self.table_path}:{line}", value)


def is_absolute(path):
    """A POSIX absolute path or a Windows drive path (``D:/``), wherever xr runs."""
    return path.startswith("/") or path[1:3] == ":/"


def tidy(path):
    """``path`` without empty and ``.`` segments, so that one file has one id (``images//a.png``,
    ``./images/./a.png``: ``images/a.png``). ``..`` stays (through a symlink it is not the lexical
    parent), as do a leading ``/``, a trailing one (a MURA study folder) and a URL's ``scheme://``."""
    scheme, sep, rest = path.rpartition("://")
    parts = [p for p in rest.split("/") if p not in ("", ".")]
    lead = "/" if rest.startswith("/") else ""
    trail = "/" if rest.endswith("/") and parts else ""
    return f"{scheme}{sep}{lead}{'/'.join(parts)}{trail}"


def _prefix(directory):
    return "" if directory in ("", ".") else directory.rstrip("/") + "/"


class ExistenceCache:
    """Answers "does this file exist?" with one directory listing per directory.

    Label tables list images folder by folder, so a small LRU of listings turns
    hundreds of thousands of stat calls into one listdir per folder, and a
    dataset folder that is absent altogether costs one failed call, not one
    per row (the CSV-only downloads of CheXpert and MURA).
    """

    def __init__(self, size=4096):
        self.size = size
        self.listings = collections.OrderedDict()
        self.absent = []  # prefixes of the topmost folders found not to exist

    def __call__(self, path):
        """Whether ``path`` exists and is not a folder (a folder is not an image; only a name without
        an image's extension is stat'ed to tell)."""
        name = os.path.basename(path)
        return name in self._listing(path) and (is_image_name(name) or not os.path.isdir(path))

    def folder(self, path):
        """Whether ``path`` is a folder its directory lists."""
        return os.path.basename(path) in self._listing(path) and os.path.isdir(path)

    def _listing(self, path):
        """The names in ``path``'s directory."""
        for prefix in self.absent:
            if path.startswith(prefix):
                return frozenset()
        directory = os.path.dirname(path)
        names = self.listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory or "."))
            except OSError:
                names = frozenset()
                self._note_absent(directory)
            self.listings[directory] = names
            if len(self.listings) > self.size:
                self.listings.popitem(last=False)
        return names

    def _note_absent(self, directory):
        if not directory or os.path.isdir(directory) or len(self.absent) >= 64:
            return
        while os.path.dirname(directory) and not os.path.isdir(os.path.dirname(directory)):
            directory = os.path.dirname(directory)
        self.absent.append(directory.rstrip(os.sep) + os.sep)


class FromName:
    """A value from the file name: group 1 of a regex, or the whole match (``--patient-regex``,
    ``--field``); None when the name does not match, or the group matched nothing (an empty id
    would group unrelated records)."""

    def __init__(self, pattern, option="--patient-regex"):
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"{option} {pattern!r}: {exc}") from None

    def __call__(self, path):
        match = self.regex.search(os.path.basename(path))
        if match is None:
            return None
        return (match.group(1) if self.regex.groups else match.group(0)) or None


class Tally:
    """What indexing passed over or could not find, for the report on stderr.

    ``notes`` say which columns readers took; ``warnings`` what they left; ``problems``
    count cells that could not become what the record contract says, each with its
    first ``FILE:LINE`` (``--strict`` fails on them).
    """

    def __init__(self):
        self.records = 0
        self.skipped = collections.Counter()
        self.missing = 0
        self.missing_examples = []
        self.unreadable = []
        self.notes = []
        self.warnings = []
        self.problems = {}  # why -> [count, first FILE:LINE or path, its value or None]
        self.missing_absolute = 0   # of the listed images that do not exist

    def skip(self, why):
        self.skipped[why] += 1

    def problem(self, why, where, value=None):
        """A source row or file that did not become a correct record: counted, the first kept."""
        if why in self.problems:
            self.problems[why][0] += 1
        else:
            self.problems[why] = [1, where, value]

    def miss(self, where, absolute=False):
        """A listed image that does not exist; ``absolute``: the table named it by an absolute path."""
        self.missing += 1
        self.missing_absolute += absolute
        if len(self.missing_examples) < 3:
            self.missing_examples.append(where)

    def missing_hint(self, root, strip=None):
        """What to do about listed images that do not exist, given the ``--root`` and
        ``--strip-prefix`` used."""
        if self.missing_absolute == self.missing and strip is None:
            return "the table's paths are absolute: --strip-prefix PREFIX --root DIR rebases them"
        if root is not None:
            return f"they were looked for under --root {root}"
        return "--root says where they are"
