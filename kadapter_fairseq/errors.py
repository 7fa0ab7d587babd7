"""Errors the toolkit raises on purpose.

Every user-facing failure goes through one of these so that the message names
what the user has to fix (a file, a line, a flag) instead of surfacing as a
traceback from deep inside fairseq or torch.
"""


class KAdapterError(Exception):
    """Base class: a problem the user can fix from the message alone."""


class DataError(KAdapterError, ValueError):
    """Bad input data; names the file and (1-based) line or record."""

    def __init__(self, path, line, message):
        self.path = str(path) if path is not None else None
        self.line = line
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class CheckpointError(KAdapterError):
    """A checkpoint that cannot be used: missing, truncated, wrong base, wrong layout."""


class ConfigError(KAdapterError, ValueError):
    """A configuration value that cannot work (names the key)."""
