"""libxr.pixels.resizing: the training size per epoch, the batch shrink, and the sizes a model takes."""

import pytest
import torch
import torch.nn.functional as F

from libxr.errors import UsageError
from libxr.models import build_model
from libxr.pixels.resizing import check_sizes, progressive_size, resize


@pytest.mark.parametrize("epochs, start, full, until, sizes", [
    (10, 16, 32, 0.5, [16, 19, 22, 26, 29, 32, 32, 32, 32, 32]),
    (5, 64, 128, 1.0, [64, 80, 96, 112, 128]),
    (3, 96, 128, 0.1, [96, 128, 128]),
    (1, 96, 128, 0.5, [96]),
    (3, None, 128, 0.5, [128, 128, 128]),
])
def test_the_size_of_each_epoch(epochs, start, full, until, sizes):
    assert [progressive_size(e, epochs, start, full, until) for e in range(epochs)] == sizes


def test_batches_shrink_with_antialiasing_and_full_size_is_left_alone():
    x = torch.rand(2, 1, 32, 32)
    assert resize(x, 32) is x
    small = resize(x, 20)
    assert small.shape == (2, 1, 20, 20)
    assert torch.equal(small, F.interpolate(x, size=(20, 20), mode="bilinear", antialias=True, align_corners=False))
    stripes = torch.zeros(1, 1, 32, 32)
    stripes[..., ::2] = 1                  # aliasing would turn one-pixel stripes into bands
    assert resize(stripes, 16).std() < 0.05


@pytest.mark.parametrize("model, start, message", [
    ("dense", 16, "--progressive 16: dense cannot take 16 px images"),
    ("vgg5", 16, "--progressive 16: vgg5 cannot take 16 px images"),
    ("resnet10", 32, "--progressive 32: the images are 32 px; START must be smaller"),
])
def test_sizes_a_model_cannot_take_are_usage_errors(model, start, message):
    net = build_model(model, 1, 1, 32)
    with pytest.raises(UsageError, match=message):
        check_sizes(net, 1, start, 32, model)
    assert net.training


def test_a_model_that_pools_adaptively_takes_smaller_images():
    net = build_model("resnet10", 1, 1, 32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    check_sizes(net, 1, 16, 32, "resnet10")
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
