"""xr: small composable commands for X-ray image classification.

The library is importable without click or torch; each command in ``xrtools`` is a
thin wrapper around one or two functions here.
"""

__version__ = "0.1.0"

from libxr.errors import ManifestError, UsageError, XRError  # noqa: E402
from libxr.manifest import read_records, write_records  # noqa: E402

__all__ = [
    "ManifestError",
    "UsageError",
    "XRError",
    "__version__",
    "read_records",
    "write_records",
]
