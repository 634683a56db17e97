"""The examples' scripts run for real on small synthetic data, so they cannot rot."""

import json
import os
import subprocess
import sys

from conftest import needs_commands

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def test_sharded_preprocess_array_job_and_merge(cli, synth, tmp_path):
    """examples/slurm/preprocess.sbatch as 3 array tasks, then the merge job."""
    from xrtools.index import main as index

    from libxr.pixels.h5store import open_store

    needs_commands()
    manifest = tmp_path / "all.jsonl"
    manifest.write_text(cli(index, synth("folders", count=45, size=40)).stdout)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "MANIFEST": str(manifest), "OUT": str(tmp_path / "h5"), "PREPROCESS_ARGS": "--size 32 -q",
           "SLURM_ARRAY_TASK_COUNT": "3"}
    script = os.path.join(EXAMPLES, "slurm", "preprocess.sbatch")
    for task in range(3):
        done = subprocess.run(["bash", script], env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    merged = subprocess.run(["bash", script], env={**env, "MERGE": "1"}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert merged.returncode == 0, merged.stderr
    records = [json.loads(line) for line in (tmp_path / "h5" / "manifest.jsonl").read_text().splitlines()]
    source = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in source)
    with open_store(str(tmp_path / "h5" / "data.h5")) as f:
        assert f["images"].shape == (45, 1, 32, 32)
    assert not list((tmp_path / "h5").glob("*.part"))


def test_a_task_without_the_array_variables_says_so(tmp_path):
    script = os.path.join(EXAMPLES, "slurm", "preprocess.sbatch")
    done = subprocess.run(["bash", script], env={**os.environ, "MANIFEST": "m.jsonl", "OUT": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "run as an array job" in done.stderr


def test_nightly_retraining_keeps_only_a_better_model(tmp_path):
    """examples/cron: first night trains and keeps; an unchanged night does nothing; new data with a
    training that cannot learn (lr 1e-9) is evaluated and the current model stays."""
    import hashlib
    import shutil

    from libxr.synth import SynthOptions, synthesize

    needs_commands()
    if shutil.which("make") is None:
        import pytest

        pytest.skip("make is not installed")
    data, out = tmp_path / "data", tmp_path / "out"
    synthesize(str(data), SynthOptions(count=120, size=40, seed=3))

    def night(train_args):
        return subprocess.run(["make", "-s", "-C", os.path.join(EXAMPLES, "cron"), f"DATA={data}", f"OUT={out}",
                               f"BIN={os.path.dirname(sys.executable)}", "SIZE=32",
                               "INDEX_ARGS=--patient-regex 'person(\\d+)_'", f"TRAIN_ARGS={train_args}"],
                              capture_output=True, text=True, timeout=300, check=False)

    first = night("--model vgg5 --epochs 2 --batch-size 16")
    assert first.returncode == 0, first.stderr
    assert "kept the new model" in (out / "history.log").read_text()
    digest = hashlib.sha256((out / "current.pt").read_bytes()).hexdigest()
    unchanged = night("--model vgg5 --epochs 2 --batch-size 16")
    assert unchanged.returncode == 0 and unchanged.stdout == "", unchanged.stdout
    assert len((out / "history.log").read_text().splitlines()) == 1
    some = min((data / "train" / "NORMAL").iterdir())
    shutil.copy(some, some.with_name("person9999_1.png"))
    useless = night("--model vgg5 --epochs 1 --batch-size 16 --lr 1e-9")
    assert useless.returncode == 0, useless.stderr
    last = (out / "history.log").read_text().splitlines()[-1]
    assert "kept the current model" in last and "candidate auc" in last and "current auc" in last
    assert hashlib.sha256((out / "current.pt").read_bytes()).hexdigest() == digest
    # a damaged current model: the night fails, deciding nothing from last night's scores
    (out / "current.pt").write_bytes((out / "current.pt").read_bytes()[:1000])
    shutil.copy(some, some.with_name("person9998_1.png"))
    damaged = night("--model vgg5 --epochs 1 --batch-size 16")
    assert damaged.returncode != 0 and "current.pt: not a loadable checkpoint" in damaged.stderr
    assert (out / "history.log").read_text().splitlines()[-1] == last
    assert not (out / "current-eval.json").exists() and not (out / "board.csv").exists()
