"""SIGINT, SIGTERM and SIGHUP end a dicomrecon command the same way: cleanly.

:func:`install` (called once by the CLI entry, so every command gets it) turns each of the three
signals into an :class:`Interrupted` exception raised in the main thread.  It subclasses
``KeyboardInterrupt``, so it passes through ``except Exception`` error boundaries, and every
``finally`` / ``except BaseException`` cleanup on the way out runs: the temporary file or folder
being written is removed (see :mod:`dicomrecon.writers`), outputs already renamed into place are
complete, and nothing half-written is left.  The CLI prints one line and exits with
:func:`exit_code`: 128 + the signal number, the shell's convention (130 SIGINT, 143 SIGTERM,
129 SIGHUP).

After the first signal the three are ignored, so a second Ctrl-C or a supervisor's repeated
SIGTERM cannot interrupt the cleanup itself; SIGKILL still ends the process at once (and leaves
temporaries, which the next run into the same place removes).
"""

from __future__ import annotations

import signal
import threading

#: The signals handled, by name.
HANDLED = ("SIGINT", "SIGTERM", "SIGHUP")


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_code(exc: BaseException) -> int:
    """128 + the signal number (130 for a plain KeyboardInterrupt, i.e. SIGINT)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def _signals() -> list:
    return [getattr(signal, n) for n in HANDLED if hasattr(signal, n)]


_received: list = []


def received():
    """The :class:`Interrupted` of the first signal handled, or None."""
    return _received[0] if _received else None


def _handler(signum, frame):
    _received.append(Interrupted(signum))
    for s in _signals():  # the cleanup on the way out must not be interrupted in turn
        signal.signal(s, signal.SIG_IGN)
    raise _received[-1]


def install() -> bool:
    """Handle SIGINT, SIGTERM and SIGHUP by raising :class:`Interrupted`.

    Only the main thread can set handlers; elsewhere (e.g. a test runner's worker thread) this
    does nothing and returns False.  A signal the parent process ignores (``nohup`` ignores
    SIGHUP) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for s in _signals():
        if signal.getsignal(s) is signal.SIG_IGN:
            continue
        signal.signal(s, _handler)
    return True
