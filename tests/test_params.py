"""xrtools.params: the parameter types commands share; a bad value is a usage error naming it."""

import click
import pytest
from xrtools.params import Channels, CommaList, Fraction, KeyValue, Shard, WordOr, typed

SPLITS = CommaList(KeyValue(Fraction(), "NAME=FRACTION", keys=("train", "val", "test")))


@pytest.mark.parametrize("kind, value, expected", [
    pytest.param(CommaList(), " a, b,,c ", ("a", "b", "c"), id="names"),
    pytest.param(CommaList(), "", (), id="names-empty"),
    pytest.param(CommaList(float, positive=True), "2,1.5", (2.0, 1.5), id="weights"),
    pytest.param(KeyValue(typed), "layers=5", ("layers", 5), id="arch-int"),
    pytest.param(KeyValue(typed), "batch_norm=TRUE", ("batch_norm", True), id="arch-bool"),
    pytest.param(KeyValue(typed), "dropout=0.25", ("dropout", 0.25), id="arch-float"),
    pytest.param(KeyValue(typed), "kernel_growth=funnel_in", ("kernel_growth", "funnel_in"), id="arch-word"),
    pytest.param(KeyValue(str, "NAME=REGEX"), "kind=_(a|b)=_", ("kind", "_(a|b)=_"), id="regex-with-="),
    pytest.param(KeyValue(CommaList(), "NEW=A,B"), "infected=Covid,Viral Pneumonia",
                 ("infected", ("Covid", "Viral Pneumonia")), id="merge"),
    pytest.param(SPLITS, "train=0.8,test=0.2", (("train", 0.8), ("test", 0.2)), id="splits"),
    pytest.param(Shard(), "2/8", (2, 8), id="shard"),
    pytest.param(Channels(), "enhanced", ("gray", "clahe", "equalize"), id="channels"),
    pytest.param(WordOr(("balanced", "none"), CommaList(float)), "balanced", "balanced", id="word"),
    pytest.param(WordOr(("balanced", "none"), CommaList(float)), "1,3", (1.0, 3.0), id="word-or-list"),
])
def test_values_arrive_parsed(kind, value, expected):
    assert kind.convert(value, None, None) == expected


@pytest.mark.parametrize("kind, value, message", [
    pytest.param(CommaList(float), "1,x", "'1,x' is not a list of numbers", id="weights-word"),
    pytest.param(CommaList(float, positive=True), "1,-2", "weights must be positive", id="weights-negative"),
    pytest.param(KeyValue(typed), "layers", "'layers' is not KEY=VALUE", id="arch-no-="),
    pytest.param(KeyValue(typed), "=5", "'=5' is not KEY=VALUE", id="arch-no-key"),
    pytest.param(KeyValue(str, "NAME=REGEX", reserved=("label",)), "label=x", "'label' is a field xr sets itself",
                 id="reserved"),
    pytest.param(SPLITS, "train=0.5,holdout=0.5", "'holdout=0.5': NAME is train, val or test", id="split-name"),
    pytest.param(SPLITS, "train=1.5", "'1.5' is not in (0, 1]", id="split-fraction"),
    pytest.param(Shard(), "8/8", "'8/8': I must be in 0..N-1", id="shard-range"),
    pytest.param(Shard(), "a/8", "'a/8' is not I/N", id="shard-word"),
    pytest.param(Channels(), "gray,sepia", "sepia", id="channels"),
    pytest.param(WordOr(("balanced", "none"), CommaList(float)), "some", "'some': balanced, none, or list",
                 id="word-or-list"),
])
def test_bad_values_are_usage_errors(kind, value, message):
    with pytest.raises(click.BadParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        kind.convert(value, None, None)


def test_a_bad_value_exits_2_naming_the_option(cli, tmp_path):
    from xrtools.train import main

    result = cli(main, tmp_path / "m.jsonl", "--arch", "layers")
    assert result.exit_code == 2
    assert result.stderr.startswith("xr-train: error: Invalid value for '--arch': 'layers' is not KEY=VALUE")


def test_one_pixel_option_group():
    """--size/--fit/--channels mean the same in xr-preprocess and xr-train (xr-train: raw images only)."""
    from xrtools.preprocess import main as preprocess
    from xrtools.train import main as train

    def group(command):
        return {p.name: (p.type.__class__, getattr(p.type, "min", None), getattr(p.type, "max", None), p.default)
                for p in command.params if p.name in ("size", "fit", "channels")}

    assert group(preprocess) == group(train) and len(group(train)) == 3
