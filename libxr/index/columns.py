"""Columns of label tables whatever their spelling, and the cells of the contract's fields.

Tables in the wild write ``Pleural_Effusion``, ``pleural effusion`` or ``PleuralEffusion``
for CheXpert's ``Pleural Effusion``, and ``Patientid`` or ``patient_id`` for ``Patient ID``;
readers find columns by :func:`canon` so none of them loses a label to its spelling, and
report what they took and what they left (:class:`LabelLike`).
"""

import functools
import re

_IGNORED = re.compile(r"[\s_]+")


def canon(name):
    """``name`` without case, spaces or underscores: the key columns are matched by."""
    return _IGNORED.sub("", name).casefold()


def find(header, names):
    """Position of the first of ``names`` in ``header`` (exact, else by :func:`canon`), or None."""
    for name in names:
        if name in header:
            return header.index(name)
    keys = [canon(h) for h in header]
    for name in names:
        key = canon(name)
        if key in keys:
            return keys.index(key)
    return None


def by_canon(names):
    """``{canon(name): name}``: the official spelling of a name spelt any way."""
    return {canon(n): n for n in names}


FLAG_CELLS = frozenset(("1", "0", "-1", "1.0", "0.0", "-1.0", ""))


class LabelLike:
    """Columns a reader did not take whose every cell is 1/0/-1/blank: labels it may be missing.

    ``see(row)`` on every row; a column drops out at its first other value, so once
    the ordinary columns are gone a row costs one attribute test.
    """

    def __init__(self, header, used):
        self.header = header
        self.candidates = [i for i, h in enumerate(header) if h and i not in used]
        self.stated = set()

    def see(self, row):
        for i in self.candidates:
            cell = row[i].strip() if i < len(row) else ""
            if cell not in FLAG_CELLS:
                self.candidates = [c for c in self.candidates if c != i]
                self.stated.discard(i)
            elif cell:
                self.stated.add(i)

    def names(self):
        """The columns that stayed 1/0/-1/blank and were not blank throughout."""
        return [self.header[i] for i in self.candidates if i in self.stated]

    def report(self, tally, path, why):
        """Warn (in ``tally``) about the columns left, saying ``why`` they were not taken."""
        names = self.names()
        if names:
            tally.warnings.append(f"{path}: {', '.join(map(repr, names))} "
                                  f"{'holds' if len(names) == 1 else 'hold'} only 1/0/-1/blank like a label "
                                  f"but {'was' if len(names) == 1 else 'were'} not taken: {why}")


_SEX = {"f": "F", "female": "F", "w": "F", "woman": "F", "m": "M", "male": "M", "man": "M"}
NOT_STATED = frozenset(("", "unknown", "unk", "u", "n/a", "na", "nan", "none", "null", "-", "?"))
_AGE = re.compile(r"(\d+(?:\.\d*)?)\s*([dwmy]|years?|yrs?)?", re.IGNORECASE)
_PER_YEAR = {"d": 365, "w": 52, "m": 12}


@functools.lru_cache(maxsize=4096)  # a column holds few distinct values: parse each once
def sex(cell):
    """``F`` or ``M`` (the contract's values) from F/M/female/male/woman/man in any case;
    "" when the cell states nothing (blank, unknown, n/a); None when it is something else."""
    value = cell.strip().lower()
    if value in _SEX:
        return _SEX[value]
    return "" if value in NOT_STATED else None


@functools.lru_cache(maxsize=4096)
def age(cell):
    """Whole years from ``57``, ``57.5``, ``057Y``, ``6M`` (DICOM age strings), ``57 years``;
    "" when the cell states nothing; None when it is not an age."""
    value = cell.strip()
    if value.isdecimal():       # not isdigit: "²" is a digit that int() refuses
        return int(value)
    if value.lower() in NOT_STATED:
        return ""
    match = _AGE.fullmatch(value)
    if match is None:
        return None
    number, unit = float(match.group(1)), (match.group(2) or "y")[0].lower()
    return int(number // _PER_YEAR.get(unit, 1))


def demographics(rec, sex_cell, age_cell, tally, path, line):
    """``sex`` and ``age`` into ``rec`` from their cells; a cell that states something else
    is left out and counted in ``tally`` with its ``FILE:LINE``."""
    if sex_cell:
        value = sex(sex_cell)
        if value:
            rec["sex"] = value
        elif value is None:
            tally.problem("sex that is not F or M, left out", f"{path}:{line}", sex_cell)
    if age_cell:
        value = age(age_cell)
        if value != "" and value is not None:
            rec["age"] = value
        elif value is None:
            tally.problem("age that is not a number of years, left out", f"{path}:{line}", age_cell)
