"""Parameter types and option groups more than one command takes.

Values arrive parsed and checked (a bad one is a usage error, exit 2), so a
command never splits strings itself: ``A,B,C`` lists, ``KEY=VALUE`` pairs
(composable: ``train=0.8,test=0.2`` is a list of pairs), ``I/N`` shards,
channel specs, the one ``--size/--fit/--channels`` group, ``--max-pixels`` and ``--tta``.
"""

import math

import click

from libxr.errors import UsageError
from libxr.learning.tta import TTA
from libxr.pixels.enhance import parse_channels
from libxr.pixels.files import MAX_PIXELS
from libxr.pixels.fit import FITS


def once(option, values):
    """A usage error naming the first of ``values`` given twice (the second would win, or merge, in silence)."""
    seen = set()
    for value in values:
        if value in seen:
            raise UsageError(f"{option}: {value!r} is given twice")
        seen.add(value)


def file_name(option, value, what):
    """A usage error unless ``value`` can name ``what`` (a file or folder xr writes) inside its folder."""
    if not value or value.startswith(".") or "/" in value or "\\" in value:
        raise UsageError(f"{option}: {value!r} cannot name {what} (no /, no leading dot)")


def typed(raw):
    """A command-line word as the number or boolean it spells, else the word."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


class CommaList(click.ParamType):
    """``A,B,C`` as a tuple (empty items dropped); each item converted by ``item`` (a type or a ParamType)."""

    name = "list"

    def __init__(self, item=str, positive=False):
        self.item, self.positive = item, positive

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        words = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(self.item, click.ParamType):
            return tuple(self.item.convert(w, param, ctx) for w in words)
        try:
            items = tuple(self.item(w) for w in words)
        except ValueError:
            self.fail(f"{value!r} is not a list of numbers", param, ctx)
        if self.positive and not all(0 < v < math.inf for v in items):
            self.fail("weights must be positive, finite numbers", param, ctx)
        return items


class KeyValue(click.ParamType):
    """``KEY=VALUE`` as a (key, value) pair; the value converted by ``value`` (a callable or a ParamType).

    ``keys`` limits the keys; ``reserved`` names keys that are refused.
    """

    name = "pair"

    def __init__(self, value=str, metavar="KEY=VALUE", keys=None, reserved=()):
        self.value, self.metavar, self.keys, self.reserved = value, metavar, keys, reserved

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, raw = value.partition("=")
        key = key.strip()
        if not sep or not key or not raw:
            self.fail(f"{value!r} is not {self.metavar}", param, ctx)
        if key in self.reserved:
            self.fail(f"{key!r} is a field xr sets itself", param, ctx)
        if self.keys is not None and key not in self.keys:
            allowed = ", ".join(self.keys[:-1]) + f" or {self.keys[-1]}" if len(self.keys) > 1 else self.keys[0]
            self.fail(f"{value!r}: {self.metavar.split('=')[0]} is {allowed}", param, ctx)
        if isinstance(self.value, click.ParamType):
            return key, self.value.convert(raw, param, ctx)
        try:
            return key, self.value(raw)
        except ValueError:
            self.fail(f"{value!r} is not {self.metavar}", param, ctx)


class Fraction(click.ParamType):
    """A number in (0, 1]."""

    name = "fraction"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 < number <= 1:
            self.fail(f"{value!r} is not in (0, 1]", param, ctx)
        return number


class Shard(click.ParamType):
    """``I/N``: slice I (0-based) of N."""

    name = "I/N"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            index, count = (int(v) for v in value.split("/"))
        except ValueError:
            self.fail(f"{value!r} is not I/N", param, ctx)
        if not 0 <= index < count:
            self.fail(f"{value!r}: I must be in 0..N-1", param, ctx)
        return index, count


class Channels(click.ParamType):
    """A channel spec (1, 3, enhanced, or a list of gray/equalize/clahe/stretch) as channel kinds."""

    name = "channels"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_channels(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def pixel_options(what=""):
    """``--size/--fit/--channels``: how an image becomes a model's input. ``what`` prefixes the help
    (xr-train: they apply to raw images only)."""

    def decorate(fn):
        for option in reversed((
                click.option("--size", type=click.IntRange(8, 4096), default=224, show_default=True,
                             help=f"{what}Pixels per side."),
                click.option("--fit", type=click.Choice(FITS), default="pad", show_default=True,
                             help=f"{what}pad keeps the aspect ratio (black borders), crop keeps it "
                                  "(centre cut), stretch distorts."),
                click.option("--channels", type=Channels(), default="1", show_default=True,
                             help=f"{what}1, 3 (gray copies), enhanced (gray,clahe,equalize) or a list of "
                                  "gray/equalize/clahe/stretch."))):
            fn = option(fn)
        return fn

    return decorate


def max_pixels_option(what=""):
    """``--max-pixels``, for every command that decodes or checks images: a larger image (width x
    height from its header) is unreadable, like a truncated one, and is never decoded, so a
    decompression bomb cannot take a worker's memory. ``what`` prefixes the help."""
    return click.option("--max-pixels", type=click.IntRange(1), default=MAX_PIXELS, show_default=True,
                        metavar="N", help=f"{what}An image of more pixels (width x height, read from its header) "
                                          "is unreadable and never decoded (decompression bombs).")


def tta_option(default, help):
    """``--tta none|hflip``: xr-train validates with it, xr-predict scores with it (libxr.learning.tta)."""
    return click.option("--tta", type=click.Choice(TTA), default=default, show_default=default is not None,
                        help=help)


class WordOr(click.ParamType):
    """One of ``words`` as itself, else ``other``'s conversion (``balanced``, ``none`` or ``1,3``)."""

    name = "word"

    def __init__(self, words, other):
        self.words, self.other = words, other

    def convert(self, value, param, ctx):
        if value in self.words or not isinstance(value, str):
            return value
        try:
            return self.other.convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r}: {', '.join(self.words)}, or {self.other.name}", param, ctx)


class Condition(click.ParamType):
    """``COL=A,B`` (the cell is A or B) or ``COL!=A,B`` (neither) as (column, negate, values);
    ``COL=`` is a blank cell."""

    name = "condition"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        column, sep, raw = value.partition("=")
        negate = column.endswith("!")
        column = column[:-1].strip() if negate else column.strip()
        if not sep or not column:
            self.fail(f"{value!r} is not COL=VALUE or COL!=VALUE", param, ctx)
        values = tuple(v.strip() for v in raw.split(",") if v.strip()) or ("",)
        return column, negate, values


class Delimiter(click.ParamType):
    """One character, or ``tab`` / ``\\t`` for a tab."""

    name = "delimiter"

    def convert(self, value, param, ctx):
        value = "\t" if value.lower() in ("tab", "\\t") else value
        if len(value) != 1:
            self.fail(f"{value!r} is not one character (or tab)", param, ctx)
        return value
