"""Keep freed memory inside the process (glibc `mallopt`), a measured speed-up for CPU training.

glibc serves large blocks with mmap and hands them back to the kernel on every free, so each training step
pays the kernel for fresh, zeroed pages again; on a 2-core CPU a third of a paper-size iteration went to
that. With mmap off and trimming off, freed blocks are reused. The process then keeps its peak footprint
(it does not shrink between steps), which is what a training loop reaches every step anyway. Elsewhere
(macOS, musl, Windows) nothing changes. BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return None
    return libc if hasattr(libc, 'mallopt') and hasattr(libc, 'gnu_get_libc_version') else None


def retain_freed_memory(enabled: bool = True) -> bool:
    """Turns retention on (or back to glibc's fixed defaults); False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    settings = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1} if enabled else _GLIBC_DEFAULTS
    applied = all(libc.mallopt(option, value) == 1 for option, value in settings.items())
    if not enabled:
        libc.malloc_trim(0)
    return applied
