"""Behaviour every command shares (xrtools.cli): help, version, exit codes, stdin, pipes, atomic output."""

import importlib
import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import needs_commands, sh, write_jsonl

COMMANDS = ["index", "split", "synth", "preprocess", "train", "predict", "eval", "cascade", "featmap"]


def main_of(name):
    return importlib.import_module(f"xrtools.{name}").main


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_an_example(cli, name):
    result = cli(main_of(name), "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"xr-{name} " in result.stdout.split("Example:")[1]


@pytest.mark.parametrize("name", COMMANDS)
def test_version(cli, name):
    result = cli(main_of(name), "--version")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"xr-{name} ")


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_option_is_a_one_line_usage_error(cli, name):
    result = cli(main_of(name), "--no-such-option")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"xr-{name}: error: ")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_doc_page(name):
    page = os.path.join(os.path.dirname(__file__), "..", "docs", f"xr-{name}.md")
    assert os.path.isfile(page), f"docs/xr-{name}.md is missing"


def test_runtime_error_exits_1_in_one_line(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\nnot json\n')
    result = cli(main_of("split"), "--val", "0.5", bad)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"xr-split: error: {bad}:2: not JSON: Expecting value at column 1"


def test_an_unforeseen_exception_is_one_line_naming_it(cli, tmp_path, monkeypatch):
    import xrtools.split

    def broken(*args):
        raise ValueError("Expected more than 1 value\nper channel")

    monkeypatch.setattr(xrtools.split, "assign", broken)
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": "a"}, {"id": "b"}])
    result = cli(main_of("split"), "--val", "0.5", path)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == ("xr-split: error: ValueError: Expected more than 1 value per channel (unexpected: "
                             "--verbose shows the traceback; please report it)\n")
    assert "Traceback" in cli(main_of("split"), "--val", "0.5", "--verbose", path).stderr

    class OutOfMemoryError(RuntimeError):       # torch.cuda's, by name: the machine's limit, not a bug
        pass

    def out_of_memory(*args):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(xrtools.split, "assign", out_of_memory)
    assert cli(main_of("split"), "--val", "0.5", path).stderr == (
        "xr-split: error: out of GPU memory: lower --batch-size (or --size)\n")


def test_verbose_shows_the_traceback(cli, tmp_path):
    bad = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a"}, {"id": "a"}])
    result = cli(main_of("split"), "--val", "0.5", "--verbose", bad)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


def test_dash_and_nothing_read_stdin(cli):
    text = "".join(json.dumps({"id": f"r{i}", "label": "ab"[i % 2]}) + "\n" for i in range(20))
    a = cli(main_of("split"), "--val", "0.3", input=text)
    b = cli(main_of("split"), "--val", "0.3", "-", input=text)
    assert a.exit_code == b.exit_code == 0
    assert a.stdout == b.stdout and len(a.records) == 20


def test_a_manifest_with_a_byte_order_mark_reads(cli):
    text = "\ufeff" + "".join(json.dumps({"id": f"r{i}", "label": "ab"[i % 2]}) + "\n" for i in range(20))
    result = cli(main_of("split"), "--val", "0.3", input=text.encode("utf-8"))
    assert result.exit_code == 0 and result.records[0]["id"] == "r0" and len(result.records) == 20


def test_a_full_stdout_is_named(tmp_path, synth):
    needs_commands()
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    result = sh(f"xr-index {synth('chexpert', count=200)} > /dev/full")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "xr-index: error: <stdout>: No space left on device"


def test_an_output_that_cannot_be_renamed_into_place_is_named_by_its_path(cli, tmp_path, monkeypatch):
    import libxr.atomic

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted", src)

    monkeypatch.setattr(libxr.atomic.os, "replace", refused)
    out = tmp_path / "out.jsonl"
    text = "".join(json.dumps({"id": f"r{i}", "label": "ab"[i % 2]}) + "\n" for i in range(20))
    result = cli(main_of("split"), "--val", "0.3", "-o", out, input=text)
    assert result.exit_code == 1 and result.stderr.strip() == f"xr-split: error: {out}: Operation not permitted"
    assert list(tmp_path.iterdir()) == []


def test_failed_command_leaves_no_output_file(cli, tmp_path):
    out = tmp_path / "out.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n{"id": 3}\n')
    result = cli(main_of("split"), "--val", "0.5", "-o", out, bad)
    assert result.exit_code == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.jsonl"]  # no temporary left either


def test_output_file_is_written_whole(cli, tmp_path, synth):
    out = tmp_path / "out.jsonl"
    result = cli(main_of("index"), synth("folders"), "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert len(out.read_text().splitlines()) == 60


def test_sigpipe_is_quiet(synth):
    needs_commands()
    result = sh(f"xr-index {synth('chexpert', count=200)} | head -n 1")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr


def test_real_pipeline(tmp_path):
    needs_commands()
    result = sh("xr-synth data -n 80 --size 32 -q && "
                "xr-index data --patient-regex 'person(\\d+)_' | xr-split --val 0.2 | head -n 5",
                cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    records = result.records
    assert len(records) == 5
    assert all(r["split"] in ("train", "val", "test") and r["patient"] for r in records)


def _torch_seen(module, *args, cwd=None):
    """Run ``xrtools.<module>`` with ``args`` in a fresh interpreter; (result, whether torch got imported)."""
    needs_commands()
    hook = ("import atexit, sys; atexit.register(lambda: sys.stderr.write('\\nTORCH=%s' % ('torch' in sys.modules))); "
            f"from xrtools.{module} import main; main()")
    done = subprocess.run([sys.executable, "-c", hook, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    seen = done.stderr.rstrip().rsplit("TORCH=", 1)[-1]
    return done, seen == "True"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_starts_without_torch(name):
    done, torch_seen = _torch_seen(name, "--help")
    assert done.returncode == 0 and "Example:" in done.stdout
    assert not torch_seen


@pytest.mark.parametrize("module, args", [
    pytest.param("synth", ["out", "-n", "12", "--size", "16"], id="xr-synth"),
    pytest.param("index", ["{data}", "--summary", "--check"], id="xr-index"),
    pytest.param("split", ["--val", "0.3", "{manifest}"], id="xr-split"),
    pytest.param("eval", ["{scored}", "--bootstrap", "20", "--plots", "plots"], id="xr-eval"),
    pytest.param("cascade", ["mean", "{scored}", "{scored}"], id="xr-cascade mean"),
    pytest.param("cascade", ["stack", "{scored}", "{scored}", "--fit-on", "val"], id="xr-cascade stack"),
])
def test_commands_without_a_model_run_without_torch(module, args, synth, scored, tmp_path):
    """The commands that need no model do their whole work, not only --help, without importing torch."""
    data = synth("folders")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(sh(f"xr-index {data} --patient-regex 'person(\\d+)_' -q").stdout)
    args = [a.format(data=data, manifest=manifest, scored=scored) for a in args]
    done, torch_seen = _torch_seen(module, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not torch_seen


@pytest.fixture(scope="session")
def scored(trained, tmp_path_factory):
    """The trained fixture's model's predictions of its own records (train, val and test)."""
    from xrtools.predict import main as predict

    result = CliRunner().invoke(predict, ["-m", str(trained["ckpt"]), str(trained["h5"]), "-q"])
    assert result.exit_code == 0, result.stderr
    path = tmp_path_factory.mktemp("scored") / "scored.jsonl"
    path.write_text(result.stdout)
    return path


EMPTY_INPUT = [
    pytest.param(["split", "--val", "0.2"], "no records to split", id="xr-split"),
    pytest.param(["preprocess", "-o", "{tmp}/e.h5"], "no records to preprocess", id="xr-preprocess"),
    pytest.param(["train", "--run-dir", "{tmp}/run"], "no records to train on", id="xr-train"),
    pytest.param(["predict", "-m", "{ckpt}"], "no records to score", id="xr-predict"),
    pytest.param(["eval"], "no scored records", id="xr-eval"),
    pytest.param(["cascade", "vote", "-"], "no scored records", id="xr-cascade vote"),
    pytest.param(["cascade", "chain", "--stage", "-"], "no scored records", id="xr-cascade chain"),
    pytest.param(["featmap", "-m", "{ckpt}", "--out-dir", "{tmp}/look"], "no records or images", id="xr-featmap"),
    pytest.param(["index", "{tmp}/empty"], "no images found", id="xr-index (empty folder)"),
]


@pytest.mark.parametrize("args, message", EMPTY_INPUT)
def test_empty_input_is_a_one_line_error_and_writes_nothing(cli, request, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    ckpt = request.getfixturevalue("trained")["ckpt"] if "{ckpt}" in args else None
    name, *rest = [a.format(tmp=tmp_path, ckpt=ckpt) for a in args]
    result = cli(main_of(name), *rest, "-q", input="")
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"xr-{name}") and ": error: " in lines[0], lines
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]      # no output file, no temporary


@pytest.mark.parametrize("args, source", [
    pytest.param(["split", "--val", "0.3", "--seed", "4"], "raw", id="xr-split"),
    pytest.param(["preprocess", "-o", "{tmp}/p.h5", "--size", "16"], "raw", id="xr-preprocess"),
    pytest.param(["predict", "-m", "{ckpt}"], "h5", id="xr-predict"),
    pytest.param(["eval", "--format", "json", "--bootstrap", "10"], "scored", id="xr-eval"),
    pytest.param(["cascade", "mean", "--weights", "1"], "scored", id="xr-cascade mean"),
])
def test_stdin_gives_the_same_output_as_the_file(cli, trained, scored, tmp_path, args, source):
    path = {"raw": trained["raw"], "h5": trained["h5"], "scored": scored}[source]
    name, *rest = [a.format(tmp=tmp_path, ckpt=trained["ckpt"]) for a in args]
    from_file = cli(main_of(name), *rest, path, "-q")
    from_stdin = cli(main_of(name), *rest, "-", "-q", input=path.read_text())
    assert from_file.exit_code == from_stdin.exit_code == 0, from_file.stderr + from_stdin.stderr
    if name == "eval":      # the report names its input
        from_file.stdout, from_stdin.stdout = (json.dumps({**json.loads(r.stdout), "name": None})
                                               for r in (from_file, from_stdin))
    assert from_file.stdout == from_stdin.stdout and from_file.stdout


def test_training_from_stdin_equals_training_from_the_file(cli, manifests, tmp_path):
    """Same records, same run: the metrics (timings aside) and the manifest digest in config.json agree."""
    args = ["--model", "vgg5", "--epochs", "1", "--max-steps", "2", "--batch-size", "8", "-q"]
    a = cli(main_of("train"), manifests[0], "--run-dir", tmp_path / "a", *args)
    b = cli(main_of("train"), "-", "--run-dir", tmp_path / "b", *args, input=manifests[0].read_text())
    assert a.exit_code == b.exit_code == 0, a.stderr + b.stderr

    def run(name):
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((tmp_path / name / "config.json").read_text())
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows], config["manifest_sha256"]

    assert run("a") == run("b") and len(run("a")[0]) == 1


def test_terminated_command_leaves_no_output(tmp_path):
    """A job stopped by its scheduler (SIGTERM) leaves neither the output nor its temporary."""
    import signal
    import subprocess
    import sys

    needs_commands()
    table = tmp_path / "big.csv"
    with table.open("w") as f:
        f.write("path,label\n")
        f.writelines(f"img/{i}.png,{i % 3}\n" for i in range(400_000))
    out = tmp_path / "out.jsonl"
    bin_dir = os.path.dirname(sys.executable)
    proc = subprocess.Popen([os.path.join(bin_dir, "xr-index"), str(table), "-o", str(out), "-q"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not any(p.name.endswith(".part") for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]


def test_the_library_needs_neither_click_nor_torch():
    needs_commands()
    modules = ("libxr.index, libxr.records.split, libxr.synth, libxr.pixels.preprocess, libxr.pixels.h5store, libxr.atomic, "
               "libxr.judging.evaluation, libxr.judging.metrics, libxr.judging.leaderboard, libxr.judging.tables, libxr.judging.plots, "
               "libxr.combining.cascade, libxr.combining.aligned, libxr.looking.gallery")
    result = sh(f"python -c 'import sys, {modules}; print(sorted(m for m in (\"click\", \"torch\") if m in sys.modules))'")
    assert result.stdout.strip() == "[]"


def test_example_makefiles_parse():
    """Every example's Makefile is valid and names only xr commands that exist (make -n)."""
    import glob
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = os.path.join(os.path.dirname(__file__), "..", "examples")
    makefiles = glob.glob(os.path.join(root, "*", "Makefile"))
    assert makefiles
    for makefile in makefiles:
        result = sh(f"make -n -C {os.path.dirname(makefile)} OUT=/tmp/xr-example-dry-run")
        assert result.exit_code == 0, result.stderr
        for command in ("xr-index", "xr-split", "xr-preprocess", "xr-train", "xr-predict", "xr-eval", "xr-cascade",
                        "xr-featmap"):
            if command in result.stdout:
                assert os.path.exists(os.path.join(os.path.dirname(sys.executable), command))
