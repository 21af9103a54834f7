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
does not stay resident.  Not glibc: nothing changes; glibc before 2.33 (no ``mallinfo2``):
every job ends with a plain trim, as before.
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
        except OSError:  # not glibc: nothing to do
            self.libc = None
        self.trim = getattr(self.libc, "malloc_trim", None)
        self.mallinfo2 = getattr(self.libc, "mallinfo2", None)  # glibc 2.33 and later
        if self.trim is not None and self.mallinfo2 is not None:
            self.mallinfo2.restype = _MallInfo2
            self.libc.mallopt(M_MMAP_MAX, 0)
            self.libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)

    def after(self, result) -> None:
        """Hand back free memory beyond what the next series may reuse (``result``: the job's
        result; a series' volume sizes raise the amount kept).  Without ``mallinfo2`` the
        policy is off and every job ends with a plain trim."""
        if self.trim is None:
            return
        largest = max((f.bytes for f in getattr(result, "files", ()) or ()
                       if not f.rel.endswith(".json")), default=0)
        self.keep = max(self.keep, largest * 3 // 2)
        if self.mallinfo2 is None or self.mallinfo2().fordblks > self.keep:
            self.trim(0)
