"""Process memory: peak resident set size, and giving freed heap back to the operating system.

``ru_maxrss`` is the wrong gauge for a child process on Linux: a spawned child inherits the parent's high-water
mark across ``execve``, so every child reports at least what its parent held. ``/proc/self/status``'s VmHWM
belongs to the current address space only, and writing 5 to ``/proc/self/clear_refs`` resets it, so one phase
of a run (training, after the set-up) can be measured on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since it started or since ``reset_peak_rss``."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


def rss_mb() -> float | None:
    """Current resident memory (MB), where /proc exists."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Restart the peak at the current resident size (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _glibc(function: str):
    """The C library's ``function`` on Linux, or None (another OS, or a C library without it: musl has neither
    malloc_trim nor mallinfo2, glibc before 2.33 no mallinfo2)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand heap pages freed by a large transient step (the PSI over every sample id) back to the OS. glibc
    keeps them otherwise, and the process then holds its set-up peak for the whole run. No-op elsewhere."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"  # struct mallinfo2


class _MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in _MALLINFO2.split()]


def heap_mb() -> tuple[float, float] | None:
    """(MB in use, MB free) in glibc's heap (``mallinfo2``: arenas and mmapped blocks in use; free chunks kept in
    the arenas), or None without glibc 2.33+. Free heap is memory freed but kept, possibly in pieces between blocks
    still in use: allocations land there later and fault its pages back in."""
    info = _glibc("mallinfo2")
    if info is None:
        return None
    info.restype = _MallInfo2
    m = info()
    return (m.uordblks + m.hblkhd) / 1e6, m.fordblks / 1e6


def per_sample_arrays_bytes(n: int, *holders) -> int:
    """Bytes of the one-dimensional arrays (numpy or torch) with at least ``n // 10`` entries found among the
    attributes of ``holders``, each buffer counted once: the per-sample bookkeeping a run keeps."""
    import numpy as np
    import torch

    seen: dict[int, int] = {}
    for holder in holders:
        for value in vars(holder).values():
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) >= n // 10:
                    base = v.base if isinstance(v.base, np.ndarray) else v
                    seen[base.__array_interface__["data"][0]] = base.nbytes
                elif isinstance(v, torch.Tensor) and v.dim() == 1 and len(v) >= n // 10:
                    storage = v.untyped_storage()
                    seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
