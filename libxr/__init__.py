"""xr: small composable commands for X-ray image classification.

The library is importable without click or torch; each command in ``xrtools`` is a
thin wrapper around one or two functions here.
"""

__version__ = "0.1.0"

from libxr.errors import ManifestError, UsageError, XRError
from libxr.records.manifest import read_records, write_records

__all__ = [
    "ManifestError",
    "UsageError",
    "XRError",
    "__version__",
    "read_records",
    "write_records",
]
