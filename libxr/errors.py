"""Errors that commands turn into a one-line message and an exit code."""


class XRError(Exception):
    """A runtime or data error: reported in one line, exit status 1."""

    exit_code = 1


class UsageError(XRError):
    """Options that cannot work together, found after click parsed them: exit status 2."""

    exit_code = 2


class RecordError(XRError):
    """A record that cannot be used, named by its ``record`` id, so a caller holding the
    manifest's line numbers can report it as ``FILE:LINE``."""

    def __init__(self, record, reason):
        self.record = record
        super().__init__(reason)


class ManifestError(XRError):
    """A bad line or row in an input file, reported as ``FILE:LINE: reason``."""

    def __init__(self, name, line, reason):
        self.name, self.line, self.reason = name, line, reason
        super().__init__(f"{name}:{line}: {reason}")
