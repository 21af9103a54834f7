"""Bounded retries with exponential backoff for transient network failures.

A protocol module turns a library's exception into :class:`Transient` (worth another try:
connection refused or reset, timeout, HTTP 429/502/503/504, an aborted association) or into a
final :class:`~dicomrecon.errors.PacsError`.  :func:`with_retries` tries ``attempts`` times,
sleeping ``base``, ``2*base``, ... seconds in between, then raises a PacsError that says how
many attempts failed and the last reason.
"""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

from ..errors import PacsError

T = TypeVar("T")


class Transient(Exception):
    """A failure worth retrying; its message is one user-facing line."""


def attempts_default() -> int:
    """3 attempts unless ``DICOMRECON_PACS_ATTEMPTS`` says otherwise (1-10)."""
    try:
        return min(10, max(1, int(os.environ.get("DICOMRECON_PACS_ATTEMPTS", "3"))))
    except ValueError:
        return 3


def with_retries(fn: Callable[[], T], *, attempts: int = 0, base: float = 0.5) -> T:
    attempts = attempts or attempts_default()
    for i in range(attempts):
        try:
            return fn()
        except Transient as exc:
            if i == attempts - 1:
                tries = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
                raise PacsError(f"{exc}{tries}") from None
            time.sleep(base * 2 ** i)
    raise AssertionError("unreachable")  # pragma: no cover
