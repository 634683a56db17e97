"""xr-preprocess: the HDF5 file, its records, bad images, interruption, shards and merge."""

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import hdf5_consumers, needs_commands, sh, write_jsonl
from PIL import Image
from xrtools.index import main as index
from xrtools.predict import main as predict_main
from xrtools.preprocess import main

from libxr.pixels.prepare import prepare, prepare_array


@pytest.fixture
def manifest(cli, synth, tmp_path):
    """A synthetic folders dataset indexed to a file, with an unknown field added."""
    records = cli(index, synth("folders", count=40, size=48)).records
    for r in records:
        r["mine"] = {"kept": True}
    return write_jsonl(tmp_path / "m.jsonl", records)


def run(cli, manifest, h5, *args):
    result = cli(main, manifest, "-o", h5, "--workers", 2, *args)
    return result, result.records


def test_file_and_records(cli, manifest, tmp_path):
    h5 = tmp_path / "x.h5"
    result, records = run(cli, manifest, h5, "--size", 32)
    assert result.exit_code == 0, result.stderr
    source = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in source]
    assert all(r["h5"] == str(h5) and r["mine"] == {"kept": True} for r in records)
    assert [r["row"] for r in records] == list(range(40))
    with h5py.File(h5) as f:
        assert f["images"].shape == (40, 1, 32, 32) and f["images"].dtype == np.uint8
        assert [i.decode() for i in f["ids"][:]] == [r["id"] for r in records]
        classes = json.loads(f.attrs["classes"])
        assert classes == ["NORMAL", "PNEUMONIA"]
        assert [classes[i] for i in f["label"][:]] == [r["label"] for r in records]
        assert f.attrs["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
        assert json.loads(f.attrs["params"])["size"] == 32 and f.attrs["complete"]
        stats = [os.stat(r["path"]) for r in records]
        assert f["source_size"][:].tolist() == [st.st_size for st in stats]
        assert f["source_mtime_ns"][:].tolist() == [st.st_mtime_ns for st in stats]
        for r in records[::7]:
            assert (f["images"][r["row"]] == prepare_array(r["path"], 32, "pad", ("gray",))).all()
        train = np.stack([f["images"][r["row"]] for r in records if r["split"] == "train"]) / 255.0
        assert f.attrs["mean"] == pytest.approx([train.mean()], abs=1e-9)
        assert f.attrs["std"] == pytest.approx([train.std()], abs=1e-9)


def test_same_bytes_whatever_the_workers(cli, manifest, tmp_path):
    run(cli, manifest, tmp_path / "a.h5", "--workers", 1)
    run(cli, manifest, tmp_path / "b.h5", "--workers", 2)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert (a["images"][:] == b["images"][:]).all()


def test_exact_resize_is_recorded_and_stores_the_exact_pixels(cli, tmp_path):
    """Two 2,000 px films (JPEG, PNG): by default reduced first (and recorded so), with
    --exact-resize decoded at full size; --update never mixes the two."""
    gray = np.clip(np.random.default_rng(0).normal(128, 40, (2000, 1600)), 0, 255).astype(np.uint8)
    paths = [str(tmp_path / name) for name in ("a.jpg", "b.png")]
    for path in paths:
        Image.fromarray(gray).save(path)
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": os.path.basename(p), "path": p} for p in paths])
    fast, exact = tmp_path / "fast.h5", tmp_path / "exact.h5"
    assert run(cli, manifest, fast, "--size", 64)[0].exit_code == 0
    assert run(cli, manifest, exact, "--size", 64, "--exact-resize")[0].exit_code == 0
    with h5py.File(fast) as f, h5py.File(exact) as g:
        assert json.loads(f.attrs["params"])["resize"] == "reduced"
        assert json.loads(g.attrs["params"])["resize"] == "exact"
        for row, path in enumerate(paths):
            assert (f["images"][row] == prepare_array(path, 64, "pad", ("gray",))).all()
            assert (g["images"][row] == prepare_array(path, 64, "pad", ("gray",), exact=True)).all()
            assert (f["images"][row] != g["images"][row]).any()
    mixed = cli(main, manifest, "-o", tmp_path / "x.h5", "--size", 64, "--update", exact)
    assert mixed.exit_code == 1 and "preprocessed with resize exact, not reduced" in mixed.stderr


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_enhanced_channels_and_compression(cli, manifest, tmp_path, compression):
    h5 = tmp_path / "x.h5"
    result, records = run(cli, manifest, h5, "--size", 40, "--channels", "enhanced", "--compression",
                          compression, "--fit", "crop")
    assert result.exit_code == 0
    with h5py.File(h5) as f:
        images = f["images"]
        assert images.shape == (40, 3, 40, 40) and len(f.attrs["mean"]) == 3
        assert (images.chunks is None) == (compression == "none")
        assert (images[5] == prepare_array(records[5]["path"], 40, "crop", ("gray", "clahe", "equalize"))).all()


def test_multilabel_arrays(cli, synth, tmp_path):
    records = cli(index, synth("chexpert", count=30, size=32), "--uncertain", "keep").records
    manifest = write_jsonl(tmp_path / "m.jsonl", records)
    _, out = run(cli, manifest, tmp_path / "x.h5", "--size", 16)
    with h5py.File(tmp_path / "x.h5") as f:
        names = json.loads(f.attrs["label_names"])
        labels = f["labels"][:]
        for r in out:
            for j, name in enumerate(names):
                value = r["labels"].get(name)
                assert (np.isnan(labels[r["row"], j]) if value is None else labels[r["row"], j] == value)


def broken_set(tmp_path, manifest):
    """The manifest with a zero-byte, a truncated, a not-an-image and a missing file mixed in."""
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.png").write_bytes(b"")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(bad / "cut.jpg")
    data = (bad / "cut.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(data[: len(data) // 3])
    (bad / "text.png").write_text("not a png")
    for i, name in zip((3, 10, 11, 30), ("zero.png", "cut.jpg", "text.png", "missing.png")):
        records[i]["path"] = str(bad / name)
    return write_jsonl(tmp_path / "broken.jsonl", records), {3: "empty file", 10: "unreadable image",
                                                            11: "not an image", 30: "missing"}


def test_bad_images_are_skipped_listed_and_never_stored(cli, manifest, tmp_path):
    broken, reasons = broken_set(tmp_path, manifest)
    h5 = tmp_path / "x.h5"
    result, records = run(cli, broken, h5, "--size", 24)
    assert result.exit_code == 0
    assert len(records) == 40
    for i, reason in reasons.items():
        assert reason in records[i]["error"] and "row" not in records[i] and "h5" not in records[i]
        assert f"skipped {records[i]['path']}" in result.stderr
    assert "36 images" in result.stderr and "4 skipped" in result.stderr
    good = [r for r in records if "error" not in r]
    assert [r["row"] for r in good] == list(range(36))
    with h5py.File(h5) as f:
        assert f["images"].shape[0] == 36 and f.attrs["count"] == 36
        assert [i.decode() for i in f["ids"][:]] == [r["id"] for r in good]
        for r in good[::5]:
            assert (f["images"][r["row"]] == prepare_array(r["path"], 24, "pad", ("gray",))).all()
    strict, written = run(cli, broken, tmp_path / "y.h5", "--size", 24, "--strict")
    assert strict.exit_code == 1 and written == [] and not (tmp_path / "y.h5").exists()
    first = min(reasons)
    assert strict.stderr.strip().splitlines()[-1].startswith(f"xr-preprocess: error: {records[first]['path']}: ")
    assert "(4 unreadable images; --strict writes neither the HDF5 file nor records)" in strict.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("y")) == []     # no temporary either


@pytest.mark.parametrize("flush", [1, 7, 4096])
def test_metadata_and_stats_whatever_the_flush_size(cli, manifest, tmp_path, monkeypatch, flush):
    """Ids, splits, labels and train statistics are gathered in blocks of Writer.FLUSH rows
    and the histograms summed in the workers: every block size gives the same file."""
    from libxr.pixels.h5store import Writer

    monkeypatch.setattr(Writer, "FLUSH", flush)
    broken, _ = broken_set(tmp_path, manifest)
    _, records = run(cli, broken, tmp_path / "x.h5", "--size", 24, "--channels", "gray,equalize")
    good = [r for r in records if "error" not in r]
    with h5py.File(tmp_path / "x.h5") as f:
        assert [i.decode() for i in f["ids"][:]] == [r["id"] for r in good]
        assert [s.decode() for s in f["split"][:]] == [r["split"] for r in good]
        classes = json.loads(f.attrs["classes"])
        assert [classes[i] for i in f["label"][:]] == [r["label"] for r in good]
        train = np.stack([f["images"][r["row"]] for r in good if r["split"] == "train"]) / 255.0
        assert f.attrs["mean"] == pytest.approx(train.mean(axis=(0, 2, 3)), abs=1e-9)
        assert f.attrs["std"] == pytest.approx(train.std(axis=(0, 2, 3)), abs=1e-9)


def test_malformed_manifest_fails_before_any_work(cli, tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"id": "a", "path": "x.png"}\n{"id": "b"}\n')
    result = cli(main, bad, "-o", tmp_path / "x.h5")
    assert result.exit_code == 1 and f"{bad}:2: record has no 'path' string" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_stdin_and_manifest_option(cli, manifest, tmp_path):
    out = tmp_path / "records.jsonl"
    result = cli(main, "-o", tmp_path / "x.h5", "--size", 16, "--manifest", out, input=manifest.read_text())
    assert result.exit_code == 0 and result.stdout == ""
    assert len(out.read_text().splitlines()) == 40


@pytest.mark.parametrize("args, message", [
    pytest.param(["--shard", "2/2"], "--shard", id="shard-out-of-range"),
    pytest.param(["--shard", "x"], "--shard", id="shard-not-a-fraction"),
    pytest.param(["--channels", "rgb"], "--channels", id="unknown-channels"),
    pytest.param(["--size", "4"], "--size", id="size-too-small"),
    pytest.param(["--fit", "zoom"], "--fit", id="unknown-fit"),
    pytest.param(["--merge", "--update", "old.h5"], "--update re-uses decoded rows; --merge decodes nothing",
                 id="update-with-merge"),
])
def test_usage_errors(cli, manifest, tmp_path, args, message):
    result = cli(main, manifest, "-o", tmp_path / "x.h5", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_shards_merge_into_one_virtual_file(cli, manifest, tmp_path):
    _, records = run(cli, manifest, tmp_path / "whole.h5", "--size", 16)
    parts = []
    for i in range(3):
        result, shard_records = run(cli, manifest, tmp_path / f"part{i}.h5", "--size", 16, "--shard", f"{i}/3")
        assert result.exit_code == 0
        parts.append(write_jsonl(tmp_path / f"part{i}.jsonl", shard_records))
    merged = cli(main, "--merge", "-o", tmp_path / "data.h5", *parts)
    assert merged.exit_code == 0, merged.stderr
    out = merged.records
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert [r["row"] for r in out] == list(range(40)) and {r["h5"] for r in out} == {str(tmp_path / "data.h5")}
    with h5py.File(tmp_path / "data.h5") as f, h5py.File(tmp_path / "whole.h5") as w:
        assert f["images"].is_virtual
        assert (f["images"][:] == w["images"][:]).all()
        assert np.allclose(f.attrs["mean"], w.attrs["mean"]) and np.allclose(f.attrs["std"], w.attrs["std"])
        assert (f["label"][:] == w["label"][:]).all()
        assert (f["source_mtime_ns"][:] == w["source_mtime_ns"][:]).all()
        assert f.attrs["rows_sha256"] == w.attrs["rows_sha256"]
    # the virtual file finds its shards relative to itself, from any working directory
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ["data.h5"] + [f"part{i}.h5" for i in range(3)]:
        os.rename(tmp_path / name, moved / name)
    code = ("import h5py, numpy; f = h5py.File('moved/data.h5'); "
            "assert f['images'][:].any(); print(int(f['images'][39].sum() > 0))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


def merged_set(cli, raw, folder, shards=2):
    """``raw`` preprocessed at 32 px in ``shards`` shards and merged: (merged manifest, merged file, shard files)."""
    parts, files = [], []
    for i in range(shards):
        files.append(folder / f"part{i}.h5")
        result = cli(main, raw, "-o", files[-1], "--size", 32, "--shard", f"{i}/{shards}", "-q")
        assert result.exit_code == 0, result.stderr
        parts.append(write_jsonl(folder / f"part{i}.jsonl", result.records))
    merged = cli(main, "--merge", "-o", folder / "data.h5", *parts, "-q")
    assert merged.exit_code == 0, merged.stderr
    return write_jsonl(folder / "merged.jsonl", merged.records), folder / "data.h5", files


def replace_shard(cli, raw, shard, case):
    """Put something else where ``shard`` (the second of two halves of ``raw``, at 32 px) was."""
    if case == "missing":
        return shard.unlink()
    if case == "not-hdf5":
        return shard.write_text("not hdf5\n")
    fewer = shard.with_suffix(".jsonl")
    fewer.write_text("".join(raw.read_text().splitlines(keepends=True)[100:150]))
    args = {"other-records": [raw, "--shard", "0/2", "--size", 32], "fewer-rows": [fewer, "--size", 32],
            "other-size": [raw, "--shard", "1/2", "--size", 16]}[case]
    result = cli(main, *args, "-o", shard, "-q")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("case, why", [
    pytest.param("missing", " is missing (a merged file reads its pixels from its shards): restore it, or "
                 "preprocess and merge again", id="missing"),
    pytest.param("not-hdf5", ": not a readable HDF5 file", id="not-hdf5"),
    pytest.param("other-records", " was written anew since the merge (other ids or source images in its rows): "
                 "merge the shards again", id="other-records"),
    pytest.param("fewer-rows", " was written anew since the merge (50 rows, 100 were merged)", id="fewer-rows"),
    pytest.param("other-size", " was written anew since the merge (other parameters)", id="other-size"),
])
def test_a_merged_file_with_a_shard_missing_or_replaced_is_refused_by_every_consumer(cli, trained, tmp_path, case,
                                                                                     why):
    """The virtual dataset would read zeros for a missing shard, and another file's images for a
    replaced one; every consumer, and the loader, refuse the merged file naming the shard."""
    from xrtools.predict import main as predict

    from libxr.errors import XRError
    from libxr.pixels.datasets import H5Batches

    manifest, merged, shards = merged_set(cli, trained["raw"], tmp_path)
    assert cli(predict, "-m", trained["ckpt"], manifest, "-q").exit_code == 0     # whole, it is read
    replace_shard(cli, trained["raw"], shards[1], case)
    for command, entry, args in hdf5_consumers(trained["ckpt"], manifest, tmp_path):
        result = cli(entry, *args, "-q")
        assert result.exit_code == 1 and result.stdout == "", result.stderr
        assert result.stderr.startswith(f"xr-{command}: error: {merged}: its shard {shards[1]}{why}") \
            and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "r").exists()
    with pytest.raises(XRError, match=f"^{re.escape(f'{merged}: its shard {shards[1]}')}"):
        H5Batches(str(merged), [0], [0])[[0]]


def test_a_set_of_shards_that_is_not_one_whole_set_is_refused(cli, manifest, tmp_path):
    """A missing shard would lose its images in silence; a repeated or foreign one give ids twice."""
    parts = {}
    for name, source, shard in (("p0", manifest, "0/3"), ("p1", manifest, "1/3"), ("p2", manifest, "2/3"),
                                ("half", manifest, "0/2"), ("whole", manifest, None)):
        _, shard_records = run(cli, source, tmp_path / f"{name}.h5", "--size", 16, *(["--shard", shard] if shard else []))
        parts[name] = write_jsonl(tmp_path / f"{name}.jsonl", shard_records)
    other = write_jsonl(tmp_path / "other.jsonl", [json.loads(line) for line in manifest.read_text().splitlines()][::-1])
    _, shard_records = run(cli, other, tmp_path / "q1.h5", "--size", 16, "--shard", "1/3")
    parts["q1"] = write_jsonl(tmp_path / "q1.jsonl", shard_records)
    for names, message in ((["p1", "p2"], "shard 0 of 3 missing: merge all 3 shard manifests"),
                           (["p0", "p0", "p1", "p2"], f"{parts['p0']}: its records point at {tmp_path / 'p0.h5'}"),
                           (["p0", "q1", "p2"], f"{tmp_path / 'q1.h5'}: a shard of another manifest than"),
                           (["half", "p1", "p2"], f"{tmp_path / 'p1.h5'}: shard 1/3, {tmp_path / 'half.h5'} is one of 2"),
                           (["whole", "p1"], f"{tmp_path / 'whole.h5'}: not a shard")):
        result = cli(main, "--merge", "-o", tmp_path / "m.h5", *[parts[n] for n in names])
        assert result.exit_code == 1 and message in result.stderr, (names, result.stderr)
        assert result.stdout == "" and not (tmp_path / "m.h5").exists()


def test_merging_the_same_shards_again_gives_the_same_bytes(cli, manifest, tmp_path):
    """The virtual dataset carries no object time either, so make and cmp can trust a merged file."""
    _, merged, _ = merged_set(cli, manifest, tmp_path)
    first = merged.read_bytes()
    time.sleep(1.1)                 # HDF5 object times have a resolution of one second
    parts = sorted(str(p) for p in tmp_path.glob("part*.jsonl"))
    assert cli(main, "--merge", "-o", merged, *parts, "-q").exit_code == 0
    assert merged.read_bytes() == first


def test_shard_needs_a_file(cli, manifest, tmp_path):
    result = cli(main, "-o", tmp_path / "x.h5", "--shard", "0/2", input=manifest.read_text())
    assert result.exit_code == 2 and "--shard needs the manifest as a file" in result.stderr


def test_interrupted_run_leaves_nothing_that_looks_finished_and_reruns(synth, tmp_path):
    """SIGTERM mid-run: no HDF5 file, no records, no temporaries; SIGKILL: only a hidden .part."""
    needs_commands()
    root = synth("folders", count=600, size=256, name="big")
    manifest = tmp_path / "m.jsonl"
    assert sh(f"xr-index {root} > {manifest}").exit_code == 0
    bin_dir = os.path.dirname(sys.executable)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = tmp_path / "out"
        out.mkdir()
        proc = subprocess.Popen([os.path.join(bin_dir, "xr-preprocess"), str(manifest), "-o", str(out / "x.h5"),
                                 "--size", "256", "--manifest", str(out / "r.jsonl"), "--workers", "1", "-q"])
        deadline = time.time() + 60
        while not any(p.name.endswith(".part") for p in out.iterdir()) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        left = sorted(p.name for p in out.iterdir())
        assert "x.h5" not in left and "r.jsonl" not in left
        if sig == signal.SIGTERM:
            assert proc.returncode == 143 and left == []
        else:
            assert all(name.startswith(".") and name.endswith(".part") for name in left)
        rerun = sh(f"xr-preprocess {manifest} -o {out / 'x.h5'} --size 64 -q > {out / 'r.jsonl'}")
        assert rerun.exit_code == 0 and len((out / "r.jsonl").read_text().splitlines()) == 600
        with h5py.File(out / "x.h5") as f:
            assert f["images"].shape[0] == 600
        os.rename(out, tmp_path / f"done-{sig}")


def test_real_covid_images_all_decode(cli, tmp_path):
    """640 px JPEG and PNG, RGB and L mixed, folder names with spaces: every image decodes."""
    from conftest import shared

    manifest = tmp_path / "m.jsonl"
    assert cli(index, shared("covid19-3class"), "-o", manifest).exit_code == 0
    result, records = run(cli, manifest, tmp_path / "covid.h5", "--size", 64)
    assert result.exit_code == 0 and len(records) == 317
    assert not [r for r in records if "error" in r]
    with h5py.File(tmp_path / "covid.h5") as f:
        assert f["images"].shape == (317, 1, 64, 64)
        assert 0.2 < float(f.attrs["mean"][0]) < 0.8 and float(f.attrs["std"][0]) > 0.1
        assert json.loads(f.attrs["classes"]) == ["Covid", "Normal", "Viral Pneumonia"]


# ---------------------------------------------------------------- source images changed since

def own_copy(cli, synth, tmp_path, *split_args):
    """A private copy of a synthetic dataset (its images may be changed), indexed: (folder, manifest)."""
    from xrtools.split import main as split

    shutil.copytree(synth("folders", count=40, size=48), tmp_path / "ds")
    records = cli(index, tmp_path / "ds", "--patient-regex", r"person(\d+)_", "-q").stdout
    if split_args:
        records = cli(split, *split_args, "--seed", "1", "-q", input=records).stdout
    return tmp_path / "ds", write_jsonl(tmp_path / "m.jsonl", [json.loads(x) for x in records.splitlines()])


def touch(path):
    """A new mtime, the same bytes."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def alter(path):
    """Other pixels (and another size) in the same file."""
    with Image.open(path) as im:
        pixels = 255 - np.asarray(im.convert("L"))
    Image.fromarray(pixels[::2, ::2]).save(path)


def test_changed_source_images_are_a_warning_in_every_consumer(cli, synth, trained, tmp_path):
    """Images touched or edited after preprocessing: one warning line per file, counted, the first named."""
    from xrtools.featmap import main as featmap
    from xrtools.predict import main as predict
    from xrtools.train import main as train

    _, raw = own_copy(cli, synth, tmp_path, "--val", "0.25")
    h5 = tmp_path / "d.h5"
    records = cli(main, raw, "-o", h5, "--size", 32, "-q").records
    manifest = write_jsonl(tmp_path / "h5.jsonl", records)
    learned = [r for r in records if r["split"] in ("train", "val")]
    touch(learned[1]["path"])
    alter(learned[3]["path"])
    for command, entry, args, seen in (
            ("predict", predict, ["-m", trained["ckpt"], manifest], len(records)),
            ("train", train, [manifest, "--model", "vgg5", "--epochs", "1", "--run-dir", tmp_path / "r"], len(learned)),
            ("featmap", featmap, ["-m", trained["ckpt"], manifest, "-n", 100, "--cam", "--out-dir", tmp_path / "f"],
             len(records))):
        result = cli(entry, *args, "-q")
        assert result.exit_code == 0, result.stderr
        assert result.stderr.splitlines() == [(
            f"xr-{command}: warning: {h5}: 2 of {seen} source images differ from when it was written (first: "
            f"{learned[1]['id']!r} at {learned[1]['path']}, modified since): its pixels may be stale "
            "(xr-preprocess --update decodes just those again)")]
    strict = cli(predict, "-m", trained["ckpt"], manifest, "--strict", "-o", tmp_path / "s.jsonl", "-q")
    assert strict.exit_code == 1 and not (tmp_path / "s.jsonl").exists()
    assert strict.stderr.startswith(f"xr-predict: error: --strict: {h5}: 2 of {len(records)} source images differ")


def test_records_with_an_error_pass_xr_predict_unscored_counted_and_fail_strict(cli, trained, tmp_path):
    records = [json.loads(line) for line in trained["h5"].read_text().splitlines()]
    records[2] = {k: v for k, v in records[2].items() if k not in ("h5", "row")} | {"error": "x.png: empty file"}
    manifest = write_jsonl(tmp_path / "m.jsonl", records)
    result = cli(predict_main, "-m", trained["ckpt"], manifest, "-q")
    assert result.exit_code == 0 and "error" in result.records[2] and "scores" not in result.records[2]
    assert (f"1 records have an `error` and are passed on unscored (first {manifest}:3: x.png: empty file)"
            in result.stderr)
    strict = cli(predict_main, "-m", trained["ckpt"], manifest, "--strict")
    assert strict.exit_code == 1 and strict.stdout == "" and "--strict: 1 records have an `error`" in strict.stderr


def test_nothing_decoded_is_an_error_and_writes_nothing(cli, tmp_path):
    raw = write_jsonl(tmp_path / "m.jsonl", [{"id": f"r{i}", "path": f"films/{i}.png", "label": "ab"[i % 2],
                                              "split": "train"} for i in range(6)])
    result = cli(main, raw, "-o", tmp_path / "d.h5", "--size", 32, "--root", tmp_path / "nowhere")
    assert result.exit_code == 1 and result.stdout == "" and not (tmp_path / "d.h5").exists()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"xr-preprocess: error: {tmp_path / 'nowhere'}/films/") and "no image could be read (" in last
    assert "is --root right?): nothing written" in last


def test_the_hdf5_file_cannot_be_the_manifest_read(cli, synth, tmp_path):
    _, raw = own_copy(cli, synth, tmp_path, "--val", "0.25")
    before = raw.read_bytes()
    result = cli(main, raw, "-o", raw, "--size", 32)
    assert result.exit_code == 2 and "is the manifest being read" in result.stderr and raw.read_bytes() == before


def test_update_decodes_only_new_and_changed_images(cli, synth, tmp_path, monkeypatch):
    """The nightly case: one image edited, one touched, one added; --update decodes those three (as
    the decoder's own log and the summary say) and copies the rest; the file equals a full re-run."""
    from libxr.pixels import preprocess

    ds, manifest = own_copy(cli, synth, tmp_path)
    h5 = tmp_path / "d.h5"
    first = cli(main, manifest, "-o", h5, "--size", 32, "--update", h5)      # nothing to update from yet
    assert first.exit_code == 0 and f"wrote 40 images (0 copied from {h5}, 40 decoded)" in first.stderr
    records = first.records
    alter(records[5]["path"])
    touch(records[20]["path"])
    shutil.copy(records[0]["path"], ds / "train" / "NORMAL" / "person0999_1.png")
    manifest = write_jsonl(tmp_path / "m2.jsonl", cli(index, ds, "-q").records)

    decoded = []

    def recorded(path, *args):
        decoded.append(path)
        return prepare(path, *args)

    monkeypatch.setattr(preprocess, "prepare", recorded)       # in this process: --workers 1
    beside = tmp_path / "beside.h5"
    serial = cli(main, manifest, "-o", beside, "--size", 32, "--update", h5, "--workers", 1)
    added = [r["path"] for r in serial.records if r["id"] not in {x["id"] for x in records}]
    assert sorted(decoded) == sorted([records[5]["path"], records[20]["path"], *added]) and len(added) == 1
    summary = f"wrote 41 images (38 copied from {h5}, 3 decoded) to "
    assert serial.exit_code == 0 and summary in serial.stderr
    monkeypatch.undo()
    in_place = cli(main, manifest, "-o", h5, "--size", 32, "--update", h5, "--workers", 2)
    assert in_place.exit_code == 0 and summary in in_place.stderr
    full = cli(main, manifest, "-o", tmp_path / "full.h5", "--size", 32)
    assert h5.read_bytes() == beside.read_bytes() == (tmp_path / "full.h5").read_bytes()
    assert in_place.records == [{**r, "h5": str(h5)} for r in full.records]
    other = cli(main, manifest, "-o", tmp_path / "x.h5", "--size", 16, "--update", h5)
    assert other.exit_code == 1 and other.stderr.splitlines()[-1] == (
        f"xr-preprocess: error: {h5}: preprocessed with size 32, not 16: --update copies rows only from a file "
        "made with the same --size, --fit, --channels and --exact-resize")


def _children(pid):
    """The ids of the running (not zombie) children of process ``pid``, from /proc."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rpartition(")")[2].split()[:2]
        except OSError:
            continue
        if int(parent) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def _running(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _until(condition, what, limit=60):
    """Poll ``condition`` until it holds; fail, naming ``what``, if it never does (a hang, not a speed)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_kill_9_takes_the_workers_along_and_the_next_run_removes_what_it_left(synth, tmp_path):
    """`xr-preprocess --workers 2 | wc -l`, xr-preprocess killed with SIGKILL: its workers go too, the
    pipe ends; the next run to the same file removes the dead run's .part, not a live run's."""
    needs_commands()
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc to find the workers")
    manifest = tmp_path / "m.jsonl"
    assert sh(f"xr-index {synth('folders', count=600, size=256, name='big')} > {manifest}").exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    parent = subprocess.Popen(["xr-preprocess", str(manifest), "-o", str(out / "x.h5"), "--size", "256",
                               "--workers", "2", "-q"], stdout=subprocess.PIPE, env=env)
    reader = subprocess.Popen(["wc", "-l"], stdin=parent.stdout, stdout=subprocess.PIPE, text=True)
    parent.stdout.close()
    workers = []
    try:
        _until(lambda: len(_children(parent.pid)) >= 2 and any(out.glob(".*.part")), "workers decoding")
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _until(lambda: not any(map(_running, workers)), f"workers {workers} gone after their parent's kill -9")
        assert reader.communicate(timeout=60)[0].strip() == "0"
    finally:
        for pid in filter(_running, workers):      # left by a failure: not for the next test to meet
            os.kill(pid, signal.SIGKILL)
        reader.kill()
    (dead,) = [p.name for p in out.iterdir()]
    assert dead.startswith(".x.h5.") and dead.endswith(".part") and f".{parent.pid}." in dead
    live = dead.replace(f".{parent.pid}.", f".{os.getpid()}.")        # as if this process were writing x.h5
    (out / live).write_bytes(b"")
    rerun = sh(f"xr-preprocess {manifest} -o {out / 'x.h5'} --size 32 -q > {out / 'r.jsonl'}")
    assert rerun.exit_code == 0 and len((out / "r.jsonl").read_text().splitlines()) == 600
    assert sorted(p.name for p in out.iterdir()) == [live, "r.jsonl", "x.h5"]


def test_records_that_cannot_be_written_leave_no_new_hdf5_file(manifest, tmp_path):
    """--manifest FILE: the records reach their temporary file before the HDF5 file is renamed into
    place, so a full disk writing them leaves neither (not a new file whose records are lost)."""
    import errno
    import io

    from libxr.pixels.preprocess import PreprocessOptions, preprocess

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    h5 = tmp_path / "x.h5"
    with open(manifest, "rb") as stream, pytest.raises(OSError, match="No space"):
        preprocess(stream, str(manifest), str(h5), PreprocessOptions(size=16), Full(), records_first=True)
    assert not h5.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


@pytest.mark.parametrize("to_file", [True, False], ids=["manifest-file", "stdout"])
def test_a_full_disk_writing_the_records_through_the_command(cli, manifest, tmp_path, monkeypatch, to_file):
    """--manifest FILE: neither output lands. Records on stdout can only follow the finished file
    (a reader of the pipe may open it at once), so there the HDF5 file stays."""
    import errno

    import libxr.pixels.preprocess

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(libxr.pixels.preprocess.shutil, "copyfileobj", full)
    h5, out = tmp_path / "x.h5", tmp_path / "records.jsonl"
    result = cli(main, manifest, "-o", h5, "--size", 16, *(["--manifest", out] if to_file else []))
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert h5.exists() != to_file and not out.exists()

