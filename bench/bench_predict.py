"""xr-predict's speed: images/s against a bare batched forward loop.

Both score the same 2,000 synthetic films at 128 px with the same checkpoint
(VGG-5), batch 64, same threads. The bare loop holds the normalised images in
memory as one float tensor and only runs the model; xr-predict reads uint8
rows from the HDF5 file, normalises each batch, and builds every output record
with `scores` and `pred`. Prints both rates and the ratio (target >= 0.9), for
the library call and for the whole command (process start and model load
included). Where the CPU has AMX or AVX512-BF16 it also times the library under
--precision bf16 (no target: bfloat16's scores) and says how far its scores move.
"""

import copy
import json
import os
import tempfile
import time

import torch
from common import run, synthetic_h5

from libxr.precision import native_bf16

SIZE, BATCH, COUNT, REPEATS = 128, 64, 2000, 3


def bare_rate(model, x):
    best = float("inf")
    with torch.no_grad():
        for _ in range(REPEATS):
            start = time.perf_counter()
            for i in range(0, len(x), BATCH):
                torch.sigmoid(model(x[i:i + BATCH]))
            best = min(best, time.perf_counter() - start)
    return len(x) / best


def main():
    from libxr.predicting.classifier import Classifier
    from libxr.predicting.predict import predict
    from libxr.records.manifest import read_records

    with tempfile.TemporaryDirectory() as tmp:
        manifest = synthetic_h5(tmp, COUNT, SIZE)
        run(["xr-train", manifest, "--model", "vgg5", "--epochs", "1", "--max-steps", "2", "--run-dir",
             os.path.join(tmp, "run"), "-q"])
        ckpt = os.path.join(tmp, "run", "best.pt")
        with open(manifest, "rb") as f:
            records = list(read_records(f))
        clf = Classifier(ckpt, "cpu")
        fast = Classifier(ckpt, "cpu", precision="bf16") if native_bf16(torch.device("cpu")) else None
        import h5py

        with h5py.File(os.path.join(tmp, "d.h5")) as f:
            pixels = torch.from_numpy(f["images"][:])
        x = clf.transform(pixels)
        plain = copy.deepcopy(clf.model).to(memory_format=torch.contiguous_format)    # the loop users write: NCHW
        one = os.path.join(tmp, "one.jsonl")        # one raw image: decoded with the checkpoint's preprocessing
        with open(one, "w") as f:
            f.write(json.dumps({"id": "one", "path": records[0]["path"]}) + "\n")
        ours = bare = ours_bf16 = 0.0
        command = single = float("inf")
        for _ in range(REPEATS):      # alternated, best of each: the load of a shared machine falls on all three
            bare = max(bare, bare_rate(plain, x))
            start = time.perf_counter()
            n = sum(1 for _ in predict(records, clf, BATCH))
            ours = max(ours, n / (time.perf_counter() - start))
            if fast is not None:
                start = time.perf_counter()
                n = sum(1 for _ in predict(records, fast, BATCH))
                ours_bf16 = max(ours_bf16, n / (time.perf_counter() - start))
            command = min(command, run(["xr-predict", "-m", ckpt, manifest, "--batch-size", str(BATCH), "-q"])[0])
            single = min(single, run(["xr-predict", "-m", ckpt, one, "-q"])[0])
        if fast is not None:
            moved = max(abs(a["scores"][k] - b["scores"][k])
                        for a, b in zip(predict(records, clf, BATCH), predict(records, fast, BATCH)) for k in a["scores"])
    print(f"vgg5 at {SIZE} px, {len(records)} images, batch {BATCH}, {torch.get_num_threads()} threads, the "
          f"checkpoint's TTA {clf.tta}: bare NCHW forward loop {bare:,.0f} images/s, xr-predict (library) "
          f"{ours:,.0f} images/s, ratio = {ours / bare:.2f} (target >= 0.9); the whole command "
          f"{len(records) / command:,.0f} images/s ({command:.1f} s with start-up and model load), ratio = "
          f"{len(records) / command / bare:.2f} (target >= 0.8); one raw image end to end {single:.2f} s "
          "(target <= 3 s)")
    if fast is None:
        print("  xr-predict --precision bf16: not timed, this CPU has no AMX or AVX512-BF16")
        return
    print(f"  xr-predict --precision bf16 (library) {ours_bf16:,.0f} images/s: {ours_bf16 / ours:.2f}x float32's "
          f"(no target: bfloat16's scores, at most {moved:.4f} from float32's)")


if __name__ == "__main__":
    main()
