"""Typed, user-facing errors. Each names what failed (a file, a config key) and why."""

from __future__ import annotations

import os


class CxrfastError(Exception):
    """Base of every error cxrfast raises on purpose."""


class DicomError(CxrfastError, ValueError):
    """A DICOM file (or byte string) that cannot be read, and the reason."""

    def __init__(self, source: str | os.PathLike | None, reason: str):
        self.source = os.fspath(source) if source is not None else "<bytes>"
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class DataError(CxrfastError, ValueError):
    """A dataset, manifest or label file that is malformed."""


class ConfigError(CxrfastError, ValueError):
    """A configuration value that cannot work, found before any work starts."""
