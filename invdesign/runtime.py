"""Process-wide settings for the command line: keep freed memory for reuse.

glibc's malloc hands large blocks (above a threshold that starts at 128 KiB) back to the
operating system as soon as they are freed, and trims the heap's free top. Batched numpy and
torch work allocates and frees such blocks at every step, so each step faults its pages in
again. Where page faults are slow (virtual machines that return freed guest memory to the
host, like the 2-core machines the benchmarks ran on) that doubled the time of the Carbon-24
denoiser. The PyTorch CPU tuning guide suggests jemalloc or tcmalloc for the same reason; the
two `mallopt` settings below do the same job without another library.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # bytes: blocks below this come from the heap (glibc's maximum)
TRIM_THRESHOLD = 512 * 2**20  # bytes of free heap top kept instead of handed back


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (mmap threshold 32 MiB, trim threshold
    512 MiB); True when applied, False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: leave them be
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
