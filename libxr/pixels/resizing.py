"""Progressive resizing (``--progressive START``): train on smaller images first.

The training size is a function of the epoch alone — START in the first epoch, rising linearly
to the data's size at ``until`` of the run (fastai's and EfficientNetV2's progressive learning),
the data's size after — so a resumed run trains each epoch at the size an unbroken one would.
Batches are shrunk on the training device after augmentation, with antialiasing (a plain
bilinear shrink aliases fine texture); validation always sees full-size images.
"""

import math

from libxr.errors import UsageError


def progressive_size(epoch, epochs, start, full, until=0.5):
    """The training size of 0-based ``epoch`` of ``epochs`` (``until`` 1: the last epoch is the first
    at full size)."""
    if not start:
        return full
    reach = max(1, math.ceil(until * (epochs - 1)))      # the first epoch at full size
    return int(start + (full - start) * min(1.0, epoch / reach) + 0.5)


def resize(x, size):
    """A float (B, C, H, W) batch at ``size`` x ``size`` (itself when it is that size already)."""
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def check_sizes(model, in_channels, start, full, name):
    """A usage error unless ``model`` takes ``start`` px inputs as well as ``full``: networks that
    flatten a fixed-size map (dense, cnn with global_pool=none) or pool below a pixel do not."""
    import torch

    if not start < full:
        raise UsageError(f"--progressive {start}: the images are {full} px; START must be smaller")
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, start, start, device=device))
    except (RuntimeError, ValueError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"--progressive {start}: {name} cannot take {start} px images ({why})") from None
    finally:
        model.train(training)
