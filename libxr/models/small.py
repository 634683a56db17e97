"""The small networks of reports 001 and 002, as they describe them.

``vgg5``: five conv(3x3)-ReLU-maxpool blocks and two dense layers (report 001's
normal-vs-infected classifier). ``resnet10``: ten convolutions with residual
connections and two dense layers (report 001's COVID-vs-non-COVID classifier).
``dense``: four dense layers of 200 units with dropout 0.5 (report 002).
Feature maps are pooled to 2 x 2 before the dense layers, as at report 001's
input size, so any input size the max-pooling leaves a pixel of works.
"""

from torch import nn

from libxr.errors import UsageError


def _require_pixels(name, size, halvings):
    """A clear error where the max-pooling would leave no pixel (a traceback from deep in torch otherwise)."""
    if size < 2 ** halvings:
        raise UsageError(f"{name} halves the image {halvings} times: {size} px images are below its smallest, "
                         f"{2 ** halvings} (--size of xr-preprocess, or of xr-train for raw images)")


def _head(width, outputs, dropout, hidden=128):
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, outputs))


class _FeaturesHead(nn.Module):
    """A feature extractor then a dense head; the conv networks pool to 2 x 2 in between."""

    def _conv_head(self, layers, channels, outputs, dropout):
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2))
        self.head = _head(channels * 4, outputs, dropout)

    def forward(self, x):
        return self.head(self.features(x))


class VGG5(_FeaturesHead):
    def __init__(self, in_channels, outputs, size, widths=(16, 32, 64, 128, 256), dropout=0.5,
                 batch_norm=True):
        super().__init__()
        _require_pixels("vgg5", size, len(widths))
        blocks, channels = [], in_channels
        for width in widths:
            blocks += [nn.Conv2d(channels, width, 3, padding=1)]
            blocks += [nn.BatchNorm2d(width)] if batch_norm else []
            blocks += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self._conv_head(blocks, channels, outputs, dropout)


class _Residual(nn.Module):
    def __init__(self, channels, batch_norm):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), norm(), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1), norm())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.body(x))


class ResNet10(_FeaturesHead):
    """Stem conv, then per width a conv and a two-conv residual block, pooled: 1 + 3 x 3 = 10 convs."""

    def __init__(self, in_channels, outputs, size, widths=(32, 64, 128), dropout=0.5, batch_norm=True):
        super().__init__()
        _require_pixels("resnet10", size, len(widths) + 1)
        norm = nn.BatchNorm2d if batch_norm else (lambda c: nn.Identity())
        layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1), norm(widths[0]), nn.ReLU(inplace=True),
                  nn.MaxPool2d(2)]
        channels = widths[0]
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), norm(width), nn.ReLU(inplace=True),
                       _Residual(width, batch_norm), nn.MaxPool2d(2)]
            channels = width
        self._conv_head(layers, channels, outputs, dropout)


class Dense(_FeaturesHead):
    def __init__(self, in_channels, outputs, size, units=200, depth=4, dropout=0.5):
        super().__init__()
        layers, width = [nn.Flatten()], in_channels * size * size
        for _ in range(depth):
            layers += [nn.Linear(width, units), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = units
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, outputs)
