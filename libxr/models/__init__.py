"""Every model xr trains, built by name: ``build_model(name, in_channels, outputs, size, ...)``.

``cnn`` (report 000), ``vgg5`` and ``resnet10`` (report 001), ``dense``
(report 002), and any torchvision classifier by its name (``resnet18``,
``densenet121``, ``efficientnet_b0``, ...; see libxr.models.zoo).
"""

from libxr.models.cnn import ConfigurableCNN
from libxr.models.small import VGG5, Dense, ResNet10

OWN = {"cnn": ConfigurableCNN, "vgg5": VGG5, "resnet10": ResNet10, "dense": Dense}


def build_model(name, in_channels, outputs, size, **options):
    """A model for (in_channels, size, size) inputs with ``outputs`` logits.

    ``options`` are the constructor's (own models) or weights/head/dropout/freeze
    (torchvision models).
    """
    if name in OWN:
        return OWN[name](in_channels, outputs, size, **options)
    from libxr.models import zoo

    return zoo.build(name, in_channels, outputs, **options)


__all__ = ["OWN", "build_model"]
