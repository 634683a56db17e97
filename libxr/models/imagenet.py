"""torchvision's ImageNet weights: the local torch cache first, else torchvision's own download.

The file is the one torchvision itself would use (its default weights' URL, under
``torch.hub.get_dir()/checkpoints``, so ``$TORCH_HOME`` moves it), fetched the way torchvision
fetches it: ``torch.hub.download_url_to_file``, with a progress bar on stderr and the SHA-256 prefix
in the file's name checked. It writes to a ``.partial`` file beside the cache path and renames it
into place only when whole and checked, so the cache never holds a half-downloaded file. Offline —
no route, a proxy that refuses, DNS failing, a timeout — is one line naming the file, its URL and
where to put it. The caller reads the file like any other (``weights_only=True``).
"""

import http.client
import os
import socket
import urllib.error

from libxr.errors import UsageError, XRError
from libxr.models import zoo

TIMEOUT = 60
"""Seconds without a byte before a download counts as offline."""


def source(name):
    """(cache path, URL) of torchvision model ``name``'s default ImageNet weights."""
    import torch
    import torchvision

    if zoo.architecture(name) != name:
        raise UsageError(f"--weights imagenet: {name} starts from torchxrayvision's weights (--weights FILE); "
                         f"ImageNet's are {zoo.architecture(name)}'s")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url)), weights.url


def imagenet_file(name, log=print, progress=False):
    """The path of ``name``'s ImageNet weights, downloaded first when the cache lacks them."""
    import torch

    path, url = source(name)
    if os.path.isfile(path):
        return path
    log(f"downloading {url} to {path}")
    expected = torch.hub.HASH_REGEX.search(os.path.basename(path))
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)           # urllib's default is to wait for ever
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, expected.group(1) if expected else None, progress=progress)
    except (OSError, http.client.HTTPException, RuntimeError) as exc:   # RuntimeError: the hash differs
        raise XRError(f"ImageNet weights for {name} are not in the torch cache and could not be downloaded "
                      f"({_why(exc)}): put {os.path.basename(path)} (from {url}) at {path}, or pass --weights PATH"
                      ) from None
    finally:
        socket.setdefaulttimeout(before)
    return path


def _why(exc):
    """The reason, in a few words: ``HTTP 404 Not Found``, ``[Errno 111] Connection refused``, ``timed out``."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return (str(reason) or type(exc).__name__).splitlines()[0]
