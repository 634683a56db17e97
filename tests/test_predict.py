"""xr-predict: scores from HDF5 rows and raw images alike, order and fields kept, bad images,
TTA, thresholds, refused files — through CliRunner and real pipes."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import needs_commands, sh, write_jsonl
from xrtools.predict import main

from libxr.predicting.classifier import Classifier


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_and_pred_on_every_record_fields_and_order_kept(cli, trained):
    result = cli(main, "-m", trained["ckpt"], trained["h5"])
    assert result.exit_code == 0, result.stderr
    source, scored = records(trained["h5"]), result.records
    cut = torch.load(trained["ckpt"], weights_only=True)["threshold"]
    assert [r["id"] for r in scored] == [r["id"] for r in source]
    for before, after in zip(source, scored):
        assert {k: after[k] for k in before} == before
        assert list(after["scores"]) == ["NORMAL", "PNEUMONIA"]
        assert sum(after["scores"].values()) == pytest.approx(1, abs=2e-6)
        p = after["scores"]["PNEUMONIA"]        # rounded to 6 places: the val record at the cut may round below it
        assert after["pred"] == ("PNEUMONIA" if p >= cut else "NORMAL") or abs(p - cut) <= 5e-7
    test = [r for r in scored if r["split"] == "test"]
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score([r["label"] == "PNEUMONIA" for r in test], [r["scores"]["PNEUMONIA"] for r in test])
    assert auc > 0.85                                                       # the model learned something
    assert "scored 200 of 200 records" in result.stderr


def test_raw_images_get_the_checkpoints_preprocessing(cli, trained):
    """No HDF5 step: the raw files, decoded as xr-preprocess did, score the same."""
    from_h5 = cli(main, "-m", trained["ckpt"], trained["h5"]).records
    from_raw = cli(main, "-m", trained["ckpt"], trained["raw"], "--workers", 2, "--batch-size", 7).records
    assert [r["id"] for r in from_raw] == [r["id"] for r in from_h5]
    for a, b in zip(from_h5, from_raw):
        assert b["scores"]["PNEUMONIA"] == pytest.approx(a["scores"]["PNEUMONIA"], abs=1e-5)


def test_unreadable_images_get_an_error_and_the_run_goes_on(cli, trained, tmp_path):
    source = records(trained["raw"])[:12]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    source[3]["path"] = str(tmp_path / "empty.png")
    source[7]["path"] = str(tmp_path / "text.png")
    source[9]["path"] = str(tmp_path / "missing.png")
    source[10]["error"] = "failed in xr-preprocess"
    manifest = write_jsonl(tmp_path / "m.jsonl", source)
    result = cli(main, "-m", trained["ckpt"], manifest)
    assert result.exit_code == 0, result.stderr
    out = result.records
    assert len(out) == 12 and [i for i, r in enumerate(out) if "error" in r] == [3, 7, 9, 10]
    assert all("scores" not in out[i] for i in (3, 7, 9, 10)) and all("scores" in out[i] for i in (0, 11))
    assert str(tmp_path / "empty.png") in out[3]["error"] and out[10]["error"] == "failed in xr-preprocess"
    assert "3 images could not be read" in result.stderr and "scored 8 of 12" in result.stderr
    assert f"1 records have an `error` and are passed on unscored (first {manifest}:11" in result.stderr
    strict = cli(main, "-m", trained["ckpt"], manifest, "--strict", "-o", tmp_path / "out.jsonl")
    assert strict.exit_code == 1 and "--strict: 1 records have an `error`" in strict.stderr
    del source[10]["error"]
    manifest = write_jsonl(tmp_path / "m.jsonl", source)
    strict = cli(main, "-m", trained["ckpt"], manifest, "--strict", "-o", tmp_path / "out.jsonl")
    assert strict.exit_code == 1 and "empty.png" in strict.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_checkpoints_threshold_is_youdens_on_validation(cli, trained):
    from libxr.judging.thresholds import choose

    val = [r for r in cli(main, "-m", trained["ckpt"], trained["h5"], "--threshold", "0.5").records
           if r["split"] == "val"]
    cut = choose("youden", [r["label"] == "PNEUMONIA" for r in val], [r["scores"]["PNEUMONIA"] for r in val])
    assert torch.load(trained["ckpt"], weights_only=True)["threshold"] == pytest.approx(cut, abs=1e-5)


def _pneumonia(scored, split=None):
    return np.array([r["scores"]["PNEUMONIA"] for r in scored if split in (None, r["split"])])


def test_scores_are_calibrated_with_the_checkpoints_temperature_and_no_calibrate_undoes_it(cli, trained, tmp_path):
    state = torch.load(trained["ckpt"], weights_only=True)
    t = state["temperature"]
    assert abs(np.log(t)) > 0.1                      # the test needs a temperature that changes the scores
    cal = cli(main, "-m", trained["ckpt"], trained["h5"])
    raw = cli(main, "-m", trained["ckpt"], trained["h5"], "--no-calibrate")
    assert cal.exit_code == raw.exit_code == 0
    assert all(r["temperature"] == round(t, 6) for r in cal.records)
    assert not any("temperature" in r for r in raw.records)
    p_cal, p_raw = _pneumonia(cal.records), _pneumonia(raw.records)
    inside = (p_raw > 0.01) & (p_raw < 0.99)         # away from 0 and 1, where 6 decimals are exact enough
    assert inside.sum() > 50
    logit = np.log(p_raw[inside]) - np.log1p(-p_raw[inside])
    assert p_cal[inside] == pytest.approx(1 / (1 + np.exp(-logit / t)), abs=2e-5)
    # each threshold was chosen on its own scores: the same decisions, the same point of the ROC curve
    assert [r["pred"] for r in cal.records] == [r["pred"] for r in raw.records]
    assert f"threshold {state['threshold']:.3f}; temperature {t:.3f})" in cal.stderr
    assert f"threshold {state['threshold_raw']:.3f}; raw scores)" in raw.stderr
    again = cli(main, "-m", trained["ckpt"], write_jsonl(tmp_path / "scored.jsonl", cal.records), "--no-calibrate")
    assert again.records == raw.records               # a temperature brought in is not carried over


def test_a_platt_shift_is_applied_carried_and_undone_by_xr_eval(cli, trained, tmp_path):
    """A checkpoint calibrated with --calibration platt: scores sigmoid(z / T + b), each record
    carries both, and xr-eval's raw figures are those of --no-calibrate."""
    from xrtools.eval import main as xr_eval

    state = torch.load(trained["ckpt"], weights_only=True)
    t, b = state["temperature"], -1.5
    state["shift"] = b
    shifted = tmp_path / "platt.pt"
    torch.save(state, shifted)
    cal = cli(main, "-m", shifted, trained["h5"])
    raw = cli(main, "-m", shifted, trained["h5"], "--no-calibrate")
    assert cal.exit_code == raw.exit_code == 0, cal.stderr
    assert all(r["temperature"] == round(t, 6) and r["shift"] == b for r in cal.records)
    assert not any("shift" in r or "temperature" in r for r in raw.records)
    assert f"temperature {t:.3f}; shift -1.500)" in cal.stderr
    p_cal, p_raw = _pneumonia(cal.records), _pneumonia(raw.records)
    inside = (p_raw > 0.01) & (p_raw < 0.99)
    logit = np.log(p_raw[inside]) - np.log1p(-p_raw[inside])
    assert p_cal[inside] == pytest.approx(1 / (1 + np.exp(-(logit / t + b))), abs=2e-5)
    reports = [json.loads(cli(xr_eval, write_jsonl(tmp_path / f"{n}.jsonl", r.records), "--format", "json").stdout)
               ["sections"]["test"] for n, r in (("cal", cal), ("raw", raw))]
    assert reports[0]["shift"] == b and reports[0]["temperature"] == round(t, 6) and "shift" not in reports[1]
    for key in ("ece", "brier", "log_loss"):
        assert reports[0][f"{key}_raw"] == pytest.approx(reports[1][key], abs=1e-4)
    again = cli(main, "-m", trained["ckpt"], tmp_path / "cal.jsonl")    # a shift brought in is not carried over
    assert not any("shift" in r for r in again.records)


def test_the_raw_threshold_is_youdens_on_the_raw_validation_scores(cli, trained):
    from libxr.judging.thresholds import choose

    raw = cli(main, "-m", trained["ckpt"], trained["h5"], "--no-calibrate").records
    val = [r for r in raw if r["split"] == "val"]
    cut = choose("youden", [r["label"] == "PNEUMONIA" for r in val], _pneumonia(val))
    assert torch.load(trained["ckpt"], weights_only=True)["threshold_raw"] == pytest.approx(cut, abs=1e-5)


def test_a_checkpoint_without_a_temperature_gives_raw_scores_and_says_so_once(cli, trained, tmp_path):
    """A checkpoint from before xr-train calibrated: one threshold, chosen on raw scores, no temperature."""
    state = torch.load(trained["ckpt"], weights_only=True)
    state["threshold"] = state.pop("threshold_raw")
    del state["temperature"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    result = cli(main, "-m", old, trained["h5"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(f"{old} has no temperature") == 1 and "T = 1" in result.stderr
    assert result.records == cli(main, "-m", trained["ckpt"], trained["h5"], "--no-calibrate").records


def test_precision_bf16_scores_within_bfloat16_rounding_of_float32(cli, trained):
    fp32 = cli(main, "-m", trained["ckpt"], trained["h5"], "--precision", "fp32")
    bf16 = cli(main, "-m", trained["ckpt"], trained["h5"], "--precision", "bf16")
    assert fp32.exit_code == bf16.exit_code == 0, bf16.stderr
    a, b = (np.array([r["scores"]["PNEUMONIA"] for r in result.records]) for result in (fp32, bf16))
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 0.02
    assert "bfloat16" not in bf16.stderr or "no bfloat16 arithmetic" in bf16.stderr
    assert cli(main, "-m", trained["ckpt"], trained["h5"], "--precision", "fp16").exit_code == 2


def test_a_model_validated_in_bfloat16_scored_in_float32_is_said(cli, trained, tmp_path):
    from conftest import checked
    from xrtools.train import main as train

    checked(train, str(trained["h5"]), "--model", "vgg5", "--epochs", "1", "--max-steps", "2", "--precision", "bf16",
            "--run-dir", str(tmp_path / "run"), "-q")
    said = "was validated in bfloat16 (xr-train --precision bf16); these scores are float32's"
    for args, told in (([], True), (["--precision", "bf16"], False), (["-q"], False)):
        result = cli(main, "-m", tmp_path / "run" / "best.pt", trained["h5"], *args)
        assert result.exit_code == 0 and (said in result.stderr) is told, result.stderr
    assert said not in cli(main, "-m", trained["ckpt"], trained["h5"]).stderr      # validated in float32


def test_emulated_bfloat16_is_warned_of(cli, trained, monkeypatch):
    from libxr import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    result = cli(main, "-m", trained["ckpt"], trained["h5"], "--precision", "bf16")
    assert result.exit_code == 0 and result.stderr.count("warning: --precision bf16: this CPU has no bfloat16") == 1


def test_tta_and_threshold(cli, trained):
    plain = cli(main, "-m", trained["ckpt"], trained["h5"]).records
    flipped = cli(main, "-m", trained["ckpt"], trained["h5"], "--tta", "hflip").records
    p0 = np.array([r["scores"]["PNEUMONIA"] for r in plain])
    p1 = np.array([r["scores"]["PNEUMONIA"] for r in flipped])
    assert not np.allclose(p0, p1) and np.all((p1 >= 0) & (p1 <= 1))
    strict_cut = cli(main, "-m", trained["ckpt"], trained["h5"], "--threshold", "0.99").records
    assert sum(r["pred"] == "PNEUMONIA" for r in strict_cut) == int((p0 >= 0.99).sum())
    assert sum(r["pred"] == "PNEUMONIA" for r in strict_cut) < sum(r["pred"] == "PNEUMONIA" for r in plain)


def test_classifier_averages_the_mirror_in_probability(trained):
    """Raw scores: the views' probabilities are averaged before any temperature applies."""
    clf = Classifier(str(trained["ckpt"]), "cpu", calibrate=False)
    x = torch.randint(0, 255, (4, 1, 32, 32), dtype=torch.uint8)
    both = clf.scores(x, "hflip")
    expected = (clf.scores(x) + clf.scores(torch.flip(x, dims=(-1,)))) / 2
    assert both == pytest.approx(expected, abs=1e-6)


def test_multiclass_and_multilabel_records(cli, synth, tmp_path):
    from xrtools.index import main as index
    from xrtools.split import main as split
    from xrtools.train import main as train

    for layout, check in (("chexpert", lambda r: isinstance(r["pred"], list) and len(r["scores"]) >= 2),
                          ("folders3", lambda r: r["pred"] in r["scores"] and len(r["scores"]) == 3)):
        if layout == "folders3":
            root = synth("folders", count=60, size=32, classes=("COVID", "NORMAL", "Viral Pneumonia"))
        else:
            root = synth("chexpert", count=60, size=32)
        indexed = cli(index, root).stdout
        manifest = tmp_path / f"{layout}.jsonl"
        manifest.write_text(cli(split, "--val", "0.3", "--resplit", input=indexed).stdout)
        run = tmp_path / layout
        trained = cli(train, manifest, "--model", "dense", "--size", 32, "--epochs", 1, "--run-dir", run, "-q")
        assert trained.exit_code == 0, trained.stderr
        out = cli(main, "-m", run / "best.pt", manifest).records
        assert out and all(check(r) for r in out if "error" not in r)
        if layout == "folders3":         # decided by the most probable class: a threshold would do nothing
            cut = cli(main, "-m", run / "best.pt", manifest, "--threshold", "0.3")
            assert cut.exit_code == 2 and f"--threshold: {run / 'best.pt'} is multiclass" in cut.stderr


@pytest.mark.parametrize("problem, message", [
    pytest.param("size", "preprocessed with size 48, the model was trained on size 32",
                 id="other-image-size"),
    pytest.param("row", "is not one of its", id="row-outside-the-file"),
    pytest.param("nothing", "neither `h5`/`row` nor `path`", id="no-image-at-all"),
])
def test_records_that_cannot_be_scored(cli, trained, tmp_path, problem, message):
    from xrtools.preprocess import main as preprocess

    source = records(trained["h5"])[:5]
    if problem == "size":
        out = cli(preprocess, "-o", tmp_path / "big.h5", "--size", 48, input=trained["raw"].read_text())
        source = out.records[:5]
    elif problem == "row":
        source[2]["row"] = 10_000
    else:
        del source[1]["h5"], source[1]["row"], source[1]["path"]
    result = cli(main, "-m", trained["ckpt"], write_jsonl(tmp_path / "m.jsonl", source))
    assert result.exit_code == 1 and message in result.stderr


@pytest.mark.parametrize("content, message", [
    pytest.param(None, "no such checkpoint", id="missing"),
    pytest.param(b"garbage", "not a loadable checkpoint", id="garbage-bytes"),
    pytest.param({"model": {}}, "not an xr-train checkpoint", id="not-from-xr-train"),
])
def test_bad_checkpoints(cli, trained, tmp_path, content, message):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    result = cli(main, "-m", path, trained["h5"])
    assert result.exit_code == 1 and message in result.stderr


def test_through_a_pipe_into_xr_eval(trained, tmp_path):
    needs_commands()
    copy = tmp_path / "best.pt"
    shutil.copy(trained["ckpt"], copy)
    result = sh(f"xr-predict -m {copy} {trained['h5']} | xr-eval --split test --format json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    test = report["sections"]["test"]
    assert test["n"] == sum(r["split"] == "test" for r in records(trained["h5"]))
    assert test["auc"] > 0.8
    assert test["temperature"] == round(torch.load(copy, weights_only=True)["temperature"], 6)
    raw = json.loads(sh(f"xr-predict -m {copy} {trained['h5']} --no-calibrate | xr-eval --split test --format json")
                     .stdout)["sections"]["test"]
    for key in ("ece", "brier", "log_loss"):          # xr-eval undid the temperature the records carry
        assert test[f"{key}_raw"] == pytest.approx(raw[key], abs=1e-5)
    assert "ece_raw" not in raw and "temperature" not in raw


@pytest.mark.parametrize("row", [
    pytest.param(-1, id="negative"), pytest.param("3", id="string"), pytest.param(3.7, id="float"),
    pytest.param(True, id="boolean"), pytest.param(10**9, id="huge"), pytest.param(None, id="missing"),
])
def test_a_row_that_is_not_a_row_of_the_file_is_refused_by_every_consumer(cli, trained, tmp_path, row):
    from xrtools.featmap import main as featmap
    from xrtools.train import main as train

    source = records(trained["h5"])
    source[3]["row"] = row
    manifest = write_jsonl(tmp_path / "m.jsonl", source)
    for command, args in ((main, ["-m", trained["ckpt"], manifest]),
                          (train, [manifest, "--model", "vgg5", "--epochs", "1", "--run-dir", tmp_path / "r"]),
                          (featmap, ["-m", trained["ckpt"], manifest, "-n", "5", "--out-dir", tmp_path / "f"])):
        result = cli(command, *args, "-q")
        assert result.exit_code == 1 and result.stdout == "", result.stderr
        assert f"row {row!r} of record {source[3]['id']!r} is not one of its 200 rows" in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_stale_manifest_is_refused_by_every_consumer(cli, trained, tmp_path):
    """xr-preprocess wrote the file anew (other records, other order); the old manifest must not be read."""
    from xrtools.featmap import main as featmap
    from xrtools.preprocess import main as preprocess
    from xrtools.train import main as train

    old = records(trained["h5"])
    shuffled = trained["raw"].read_text().splitlines()[::-1]
    remade = cli(preprocess, "-o", tmp_path / "d.h5", "--size", 32, "-q", input="\n".join(shuffled) + "\n")
    assert remade.exit_code == 0, remade.stderr
    stale = write_jsonl(tmp_path / "stale.jsonl", [{**r, "h5": str(tmp_path / "d.h5")} for r in old])
    for command, args in ((main, ["-m", trained["ckpt"], stale]),
                          (train, [stale, "--model", "vgg5", "--epochs", "1", "--run-dir", tmp_path / "r"]),
                          (featmap, ["-m", trained["ckpt"], stale, "-n", "1", "--out-dir", tmp_path / "f"])):
        result = cli(command, *args, "-q")
        assert result.exit_code == 1 and result.stdout == "", result.stderr
        assert f"row 0 holds {remade.records[0]['id']!r}, not {old[0]['id']!r}: the manifest is stale" \
            in result.stderr
    fresh = cli(main, "-m", trained["ckpt"], write_jsonl(tmp_path / "fresh.jsonl", remade.records), "-q")
    assert fresh.exit_code == 0 and len(fresh.records) == 200


@pytest.mark.parametrize("command", ["predict", "train", "eval", "preprocess"])
def test_a_duplicate_id_is_an_error_at_its_line(cli, trained, tmp_path, command):
    import importlib

    source = records(trained["h5"])[:6]
    for r in source:
        r["scores"] = {"NORMAL": 0.5, "PNEUMONIA": 0.5}
    source.insert(4, dict(source[1]))
    manifest = write_jsonl(tmp_path / "m.jsonl", source)
    args = {"predict": ["-m", trained["ckpt"], manifest], "train": [manifest, "--run-dir", tmp_path / "r"],
            "eval": [manifest], "preprocess": [manifest, "-o", tmp_path / "x.h5"]}[command]
    result = cli(importlib.import_module(f"xrtools.{command}").main, *args, "-q")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == f"xr-{command}: error: {manifest}:5: id {source[1]['id']!r} again (first on line 2)"


@pytest.mark.parametrize("field, value, shown", [
    pytest.param("size", 60000, "size 60000", id="size-60000"),
    pytest.param("in_channels", 0, "in_channels 0", id="no-channels"),
    pytest.param("threshold", float("nan"), "threshold nan", id="nan-threshold"),
    pytest.param("threshold", 1.5, "threshold 1.5", id="threshold-above-1"),
    pytest.param("normalization", {"mean": [0.5], "std": [0.0]}, "normalization {'mean': [0.5], 'std': [0.0]}",
                 id="std-0"),
    pytest.param("task", {"kind": "binary", "names": ["only"]}, "task {'kind': 'binary'", id="one-class"),
    pytest.param("tta", "rotate", "tta 'rotate'", id="unknown-tta"),
    pytest.param("threshold_raw", -0.1, "threshold_raw -0.1", id="raw-threshold-below-0"),
    pytest.param("temperature", float("nan"), "temperature nan", id="nan-temperature"),
    pytest.param("temperature", 0.0, "temperature 0.0", id="temperature-0"),
    pytest.param("temperature", 1e9, "temperature 1000000000.0", id="temperature-1e9"),
    pytest.param("temperature", [1.0, 2.0], "temperature [1.0, 2.0]", id="per-label-temperatures-on-binary"),
    pytest.param("temperature", "hot", "temperature 'hot'", id="temperature-a-string"),
    pytest.param("shift", float("inf"), "shift inf", id="infinite-shift"),
    pytest.param("shift", 1e6, "shift 1000000.0", id="shift-1e6"),
    pytest.param("shift", [0.5, 1.0], "shift [0.5, 1.0]", id="per-label-shifts-on-binary"),
    pytest.param("task", {"kind": "binary", "names": ["NORMAL", "PNEUMONIA"], "evil": 1}, "task {", id="task-extra-key"),
    pytest.param("task", {"kind": "binary", "names": ["A", "B", "C"]}, "task {", id="binary-of-three"),
    pytest.param("task", {"kind": "binary", "names": [1, 2]}, "task {", id="names-not-strings"),
    pytest.param("task", {"kind": "binary", "names": ["A", "A"]}, "task {", id="one-name-twice"),
    pytest.param("threshold", [0.3, 0.7], "threshold [0.3, 0.7]", id="per-label-thresholds-on-binary"),
    pytest.param("threshold", True, "threshold True", id="threshold-true"),
    pytest.param("arch", "widths=1", "arch 'widths=1'", id="arch-a-string"),
    pytest.param("arch", {"bogus": 1}, "with {'bogus': 1}", id="arch-unknown-option"),
    pytest.param("model", [1, 2], "model: a list, not tensors by name", id="model-a-list"),
    pytest.param("model_name", "nosuchnet", "model 'nosuchnet'", id="unknown-model"),
    pytest.param("model_name", 7, "model_name 7", id="model-name-a-number"),
    pytest.param("preprocess", None, "preprocess None", id="no-preprocess"),
    pytest.param("normalization", {"mean": [0.5, 0.5], "std": [0.2, 0.2]}, "(for 1 channels)",
                 id="two-channel-normalization-on-one"),
    pytest.param("model", "NAN", "holds NaN or infinite weights", id="nan-weights"),
])
def test_crafted_checkpoint_fields_are_refused_on_load(cli, trained, tmp_path, field, value, shown):
    """A checkpoint from elsewhere is data: no 5 GB allocation, no all-negative predictions."""
    state = torch.load(trained["ckpt"], weights_only=True)
    if value == "NAN":
        value = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state[field].items()}
    state[field] = value
    crafted = tmp_path / "crafted.pt"
    torch.save(state, crafted)
    result = cli(main, "-m", crafted, trained["h5"])
    assert result.exit_code == 1 and result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"xr-predict: error: {crafted}: not a usable xr-train checkpoint (")
    assert shown in line
