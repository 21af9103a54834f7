"""Errors with documented exit codes.

Every error dicomrecon raises on purpose is a :class:`DicomReconError`; the CLI prints its
message as one line and exits with its ``exit_code`` (see README, "Exit codes").
Anything else is a bug: exit code 1, traceback with ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1     # a bug: please report it with the output of --debug
    USAGE = 2              # bad command-line options (typer/click's own code)
    NO_DICOM = 3           # the input holds no readable DICOM image
    PARTIAL = 4            # some volumes were written, some groups were refused
    NOTHING_CONVERTED = 5  # DICOM images were found but every group was refused
    BAD_OUTPUT = 6         # the output folder cannot be created or written
    BAD_INPUT = 7          # the input path does not exist or cannot be read
    AMBIGUOUS = 8          # API/CLI asked for one volume but the input holds several
    PACS = 9               # PACS/network: unreachable, timeout, refused, not found, rejected


class DicomReconError(Exception):
    """An error with a user-facing one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} ({self.hint})" if self.hint else msg


class NoDicomError(DicomReconError):
    exit_code = ExitCode.NO_DICOM


class InputError(DicomReconError):
    exit_code = ExitCode.BAD_INPUT


class OutputError(DicomReconError):
    exit_code = ExitCode.BAD_OUTPUT


class RefusedError(DicomReconError):
    """A group cannot be reconstructed correctly; ``findings`` say why."""

    exit_code = ExitCode.NOTHING_CONVERTED

    def __init__(self, message: str, findings=(), **kw):
        super().__init__(message, **kw)
        self.findings = list(findings)


def shown(value) -> str:
    """A header value as a message shows it: quoted, or "absent" (never Python's None)."""
    if value is None:
        return "absent"
    if isinstance(value, (list, tuple)):
        return "'" + "\\".join(str(v) for v in value) + "'"
    return f"'{value}'"


class AmbiguousInputError(DicomReconError):
    exit_code = ExitCode.AMBIGUOUS


class GridError(DicomReconError):
    """An option asks for an output grid beyond a format's or the size limit (found at plan
    time, before any pixel is decoded); the message names the option."""

    exit_code = ExitCode.USAGE


class PacsError(DicomReconError):
    """A PACS or network failure: unreachable, timeout, 401/403, unknown UID, association
    rejected, failed sub-operations, a transfer cut short, instances rejected on sending."""

    exit_code = ExitCode.PACS
