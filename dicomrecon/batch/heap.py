"""A local worker keeps the memory of one series for the next.

Each series' arrays are new memory: glibc serves allocations over 32 MiB with a fresh ``mmap``
and unmaps them on free, so every page of the next series' arrays is faulted in and zeroed
again.  That cost is large where freed memory goes back to a hypervisor (measured on the
benchmark's VM: 553,000 page faults and 2.6 s of system time for the 2 GB of arrays of a
100-series batch).  So a local worker makes glibc serve large arrays from its heap
(``M_MMAP_MAX`` 0) and keeps freed heap pages (``M_TRIM_THRESHOLD``): the next series reuses
them.

Bound: after each job the worker hands back what it holds free beyond 1.5x the largest volume
it has written (``malloc_trim``), so a heap that fragmentation grew, or a run of header chunks,
does not stay resident.  Not glibc: nothing changes (every job ends with a plain trim).
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


class Heap:
    """The worker's heap policy: :meth:`after` each job."""

    def __init__(self) -> None:
        self.keep = 0            # bytes of free heap worth keeping: 1.5x the largest volume
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            self.libc.mallinfo2.restype = _MallInfo2
            self.libc.mallopt(M_MMAP_MAX, 0)
            self.libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        except (OSError, AttributeError):  # not glibc, or older than 2.33
            self.libc = None

    def after(self, result) -> None:
        """Hand back free memory beyond what the next series may reuse (``result``: the job's
        result; a series' volume sizes raise the amount kept)."""
        largest = max((f.bytes for f in getattr(result, "files", ()) or ()
                       if not f.rel.endswith(".json")), default=0)
        self.keep = max(self.keep, largest * 3 // 2)
        if self.libc is None:
            trim()
        elif self.libc.mallinfo2().fordblks > self.keep:
            self.libc.malloc_trim(0)


def trim() -> None:
    """Hand the memory freed by the last job back to the system."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
