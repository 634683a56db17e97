"""Every command has a page in docs/, and every option of every command is named on it.

The commands come from setup.cfg's console_scripts, so a new command cannot be left out.
``-q/--quiet`` and ``-v/--verbose`` are what every command has (xrtools.cli): the pages do not
repeat them, README.md states them once, and that is where they are checked.
"""

import configparser
import importlib
import pathlib
import re

import click
import pytest
from click.testing import CliRunner

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
COMMON = ("--quiet", "--verbose")  # every command's, documented once in README.md
SKIP = ("--help", "--version")


def _console_scripts():
    """``[(name, module)]`` from setup.cfg, e.g. ``("xr-train", "xrtools.train")``."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    scripts = []
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = line.partition("=")
        module, _, attr = target.strip().partition(":")
        assert attr == "main", f"{name.strip()}: entry point {target.strip()} is not a module's main"
        scripts.append((name.strip(), module))
    return scripts


SCRIPTS = _console_scripts()


def _main(module):
    return importlib.import_module(module).main


def _commands():
    """``(page name, command path, click command)`` for every command and cascade subcommand."""
    out = []
    for name, module in SCRIPTS:
        main = _main(module)
        if isinstance(main, click.Group):
            out += [(name, f"{name} {sub}", cmd) for sub, cmd in sorted(main.commands.items())]
        else:
            out.append((name, name, main))
    return out


COMMANDS = _commands()


def _long_options(command):
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names += [opt for opt in param.opts + param.secondary_opts
                      if opt.startswith("--") and opt not in SKIP]
    return names


def _mentioned(text, option):
    """``--fit`` as a word of its own: neither ``--fit-on`` nor ``--fitness`` counts."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


OPTIONS = [pytest.param(page, option, id=f"{path}:{option}")
           for page, path, command in COMMANDS
           for option in _long_options(command) if option not in COMMON]


def test_the_scripts_are_found():
    assert len(SCRIPTS) >= 9 and ("xr-train", "xrtools.train") in SCRIPTS
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name, _ in SCRIPTS])
def test_every_command_has_a_page(name):
    assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"


@pytest.mark.parametrize("page, option", OPTIONS)
def test_every_option_is_on_its_page(page, option):
    path = DOCS / f"{page}.md"
    assert path.is_file(), f"docs/{page}.md is missing"
    text = path.read_text(encoding="utf-8")
    assert _mentioned(text, option), f"docs/{page}.md does not mention {option}"


@pytest.mark.parametrize("path, command", [pytest.param(path, command, id=path)
                                           for _, path, command in COMMANDS])
def test_common_options_are_every_commands(path, command):
    """What the pages leave to README.md must really be common to every command."""
    assert set(COMMON) <= set(_long_options(command)), f"{path} lacks one of {COMMON}"


@pytest.mark.parametrize("option", [pytest.param(option, id=option) for option in COMMON])
def test_common_options_are_in_the_readme(option):
    assert _mentioned((ROOT / "README.md").read_text(encoding="utf-8"), option)


HELPS = [pytest.param(module, [], id=name) for name, module in SCRIPTS] + [
    pytest.param(module, [sub], id=f"{name} {sub}")
    for name, module in SCRIPTS if isinstance(_main(module), click.Group)
    for sub in sorted(_main(module).commands)]


@pytest.mark.parametrize("module, args", HELPS)
def test_help_has_an_example(module, args):
    result = CliRunner().invoke(_main(module), args + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output
