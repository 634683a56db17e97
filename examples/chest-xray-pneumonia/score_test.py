"""Score a run's best checkpoint on the records whose split is test (until xr-predict/xr-eval exist).

Usage: python score_test.py MANIFEST CHECKPOINT
"""

import json
import sys

import torch

from libxr import checkpoint
from libxr.augment import BatchTransform
from libxr.loader import H5Batches
from libxr.losses import make_loss
from libxr.metrics import epoch_metrics
from libxr.models import build_model
from libxr.tasks import Task, targets
from libxr.train import TrainOptions, evaluate


def main(manifest, path):
    state = checkpoint.load(path)
    task = Task(**state["task"])
    with open(manifest, encoding="utf-8") as f:
        test = [r for r in map(json.loads, f) if r.get("split") == "test"]
    y = targets(test, task)
    model = build_model(state["model_name"], state["in_channels"], task.outputs, state["size"], **state["arch"])
    model.load_state_dict(state["model"])
    dataset = H5Batches(test[0]["h5"], [r["row"] for r in test], y)
    transform = BatchTransform(state["normalization"]["mean"], state["normalization"]["std"])
    _, scores = evaluate(model, dataset, TrainOptions(batch_size=64), torch.device("cpu"), transform,
                         make_loss(task), task)
    metrics = {k: round(v, 4) for k, v in epoch_metrics(task, y, scores).items() if v is not None}
    print(f"{len(test)} test images, best epoch {state['best']['epoch']}: {metrics}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
