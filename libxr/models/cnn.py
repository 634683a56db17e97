"""Report 000's configurable CNN.

``layers`` conv blocks; kernel sizes and filter counts follow a progression:
``funnel_out`` (kernels 3, 5, 7, ...; filters 32, 64, 128, ...), ``funnel_in``
(kernels ..., 7, 5, 3; filters 128, 64, 32, ...) or ``constant`` (3 and 64).
Each block: conv, optional batch norm, ReLU, local pooling (max/avg/none) and
spatial dropout; then global pooling (max/avg/flatten), dropout and the dense
output layer.

The defaults (preset ``xr``) are what learns on small real sets: batch norm,
light spatial dropout and stride-2 pooling, which makes the network trainable on
a CPU. Report 000's network as published — no batch norm, dropout 0.5 in both
places, pooling with stride 1 (no downsampling) — is preset ``report000``; on
850 chest films at 64 px (with stride 2) it reached a train AUC of 0.65 and
called every val film pneumonia at 0.5.
"""

import torch
from torch import nn

from libxr.errors import UsageError

PROGRESSIONS = ("funnel_in", "funnel_out", "constant")
PRESETS = {
    "xr": {"batch_norm": True, "spatial_dropout": 0.1, "dropout": 0.3, "pool_stride": 2},
    "report000": {"batch_norm": False, "spatial_dropout": 0.5, "dropout": 0.5, "pool_stride": 1},
}


def kernels(layers, mode):
    if mode == "funnel_out":
        return [2 * i + 1 for i in range(1, layers + 1)]
    if mode == "funnel_in":
        return [2 * (layers + 1 - i) + 1 for i in range(1, layers + 1)]
    return [3] * layers


def filters(layers, mode):
    if mode == "funnel_out":
        return [2 ** (i + 4) for i in range(1, layers + 1)]
    if mode == "funnel_in":
        return [max(2 ** (8 - i), 4) for i in range(1, layers + 1)]
    return [64] * layers


class ConfigurableCNN(nn.Module):
    PRESETS = PRESETS

    def __init__(self, in_channels, outputs, size, layers=5, kernel_growth="funnel_in",
                 filter_growth="constant", local_pool="avg", global_pool="avg", spatial_dropout=0.1,
                 dropout=0.3, batch_norm=True, pool_stride=2):
        super().__init__()
        for name, mode in (("kernel_growth", kernel_growth), ("filter_growth", filter_growth)):
            if mode not in PROGRESSIONS:
                raise UsageError(f"{name} {mode!r}: use one of {', '.join(PROGRESSIONS)}")
        if local_pool not in ("max", "avg", "none") or global_pool not in ("max", "avg", "flatten"):
            raise UsageError("local pooling is max, avg or none; global pooling max, avg or flatten")
        if local_pool != "none" and pool_stride > 1 and size // pool_stride ** layers < 1:
            need = pool_stride ** layers
            raise UsageError(f"{layers} layers each pooling by {pool_stride} need inputs of at least {need} px, "
                             f"not {size}: fewer layers, pool_stride=1, or a larger size")
        blocks, channels = [], in_channels
        for k, f in zip(kernels(layers, kernel_growth), filters(layers, filter_growth)):
            blocks += [nn.Conv2d(channels, f, k, padding=k // 2, bias=not batch_norm)]
            blocks += [nn.BatchNorm2d(f)] if batch_norm else []
            blocks += [nn.ReLU(inplace=True)]
            if local_pool != "none":
                pool = nn.MaxPool2d if local_pool == "max" else nn.AvgPool2d
                # stride 1 keeps the size, like Keras's padding="same"
                blocks += [nn.ReplicationPad2d((0, 1, 0, 1))] if pool_stride == 1 else []
                blocks += [pool(2, stride=pool_stride)]
            blocks += [nn.Dropout2d(spatial_dropout)] if spatial_dropout else []
            channels = f
        self.features = nn.Sequential(*blocks)
        if global_pool == "flatten":
            with torch.no_grad():
                width = self.features(torch.zeros(1, in_channels, size, size)).numel()
            self.pool = nn.Flatten()
        else:
            width = channels
            pool = nn.AdaptiveMaxPool2d(1) if global_pool == "max" else nn.AdaptiveAvgPool2d(1)
            self.pool = nn.Sequential(pool, nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, outputs))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))
