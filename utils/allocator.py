"""How the entry points' C memory allocator treats freed memory on Linux: kept for the next step.

glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mmap and unmaps it on free,
so each training step pays the kernel for zeroed pages again: at paper size on a 2-core CPU that was about a
third of an iteration. Keeping freed pages for reuse removes that cost at the same peak (BENCHMARKS.md), in
one of two ways that measured alike:

- `retain` (the default, nothing to install): glibc's own malloc, told through GLIBC_TUNABLES never to
  serve the heap with mmap (`mmap_max=0`) and never to hand the top of the heap back (`trim_threshold`
  64 GiB, `top_pad` 256 MiB). Needs glibc 2.26 or newer; elsewhere nothing changes.
- `jemalloc`, preloaded with its page decay off, where the system has it (`apt install libjemalloc2`).

`system` leaves the process as it is. The environment variable DARCOT_ALLOCATOR chooses; without it the
entry point decides by `default_choice`: `retain` for a run on the CPU whose largest activation block is at
least `RETAIN_FROM_BYTES`, `system` otherwise (a GPU run's host memory is small; at an earlier demo size,
blocks of about 5 MiB, `retain` measured no gain; BENCHMARKS.md). These settings are read when a process
starts, so `preload()` re-executes the running command once with them: the entry points call it after their
flags have parsed (`--help` never restarts) and before torch is imported, so the restart costs a fraction of
a second. Your own GLIBC_TUNABLES / MALLOC_CONF / LD_PRELOAD are kept and take precedence over these.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
from pathlib import Path

ENV = 'DARCOT_ALLOCATOR'
CHOICES = ('retain', 'jemalloc', 'system')
# glibc serves blocks above its mmap threshold with mmap; the threshold rises with the blocks freed, up to 32 MiB
# on 64-bit systems, and the heap's top is handed back above twice the threshold. Blocks of half that maximum
# and more are the ones that keep both thresholds moving, step after step.
RETAIN_FROM_BYTES = 16 << 20
LOADED_ENV = '_DARCOT_ALLOCATOR_LOADED'
RETAIN_TUNABLES = 'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.top_pad=268435456'
JEMALLOC_CONF = 'dirty_decay_ms:-1,muzzy_decay_ms:-1'
# How each variable joins several settings; for GLIBC_TUNABLES and MALLOC_CONF the last one given wins.
SEPARATORS = {'GLIBC_TUNABLES': ':', 'MALLOC_CONF': ',', 'LD_PRELOAD': ':'}
VARIABLES = (*SEPARATORS, LOADED_ENV)  # what to clear for a child process that should choose afresh


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library where it is glibc, else None (macOS, Windows, musl)."""
    try:
        name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
    except (AttributeError, ValueError, OSError):
        return None
    major, minor = version.split('.')[:2]
    return (int(major), int(minor)) if name == 'glibc' else None


def jemalloc_library() -> Path | None:
    """The system's jemalloc, or None where it is not installed."""
    patterns = ('/usr/lib/*/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2', '/usr/lib64/libjemalloc.so.2',
                '/usr/local/lib/libjemalloc.so.2')
    matches = sorted(match for pattern in patterns for match in glob.glob(pattern))
    return Path(matches[0]) if matches else None


def settings(choice: str) -> tuple[str, dict[str, str]]:
    """(allocator in effect, the environment it needs) for a DARCOT_ALLOCATOR value."""
    if choice not in CHOICES:
        raise ValueError(f'{ENV}={choice!r}: choose one of {", ".join(CHOICES)}')
    if choice == 'jemalloc' and sys.platform.startswith('linux'):
        path = jemalloc_library()
        if path is not None:
            return 'jemalloc', {'LD_PRELOAD': str(path), 'MALLOC_CONF': JEMALLOC_CONF}
        warnings.warn(f'{ENV}=jemalloc: jemalloc is not installed (apt install libjemalloc2); keeping freed '
                      'memory with glibc instead (retain)', stacklevel=2)
        choice = 'retain'
    if choice == 'retain' and (glibc_version() or (0, 0)) >= (2, 26):
        return 'retain', {'GLIBC_TUNABLES': RETAIN_TUNABLES}
    return 'system', {}


def gpu_present() -> bool:
    """Whether this machine shows a CUDA or ROCm GPU to this process, told without importing torch."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES', os.environ.get('HIP_VISIBLE_DEVICES'))
    if visible is not None and visible.strip() in ('', '-1'):
        return False
    nvidia = Path('/proc/driver/nvidia/gpus')
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path('/dev/kfd').exists()


def runs_on_cpu(device: str) -> bool:
    """Whether a `--device` value (`utils.distributed.pick_device`) puts the run on the CPU, told without torch."""
    return device.strip().lower() in ('cpu', '', '-1') or not gpu_present()


def default_choice(on_cpu: bool, largest_block_bytes: int) -> str:
    """The allocator of a run without DARCOT_ALLOCATOR: `retain` where a CPU run's blocks are large enough for
    glibc to unmap and refault them every step, `system` elsewhere."""
    return 'retain' if on_cpu and largest_block_bytes >= RETAIN_FROM_BYTES else 'system'


def preload(default: str = 'retain') -> str:
    """Re-executes this command once with the allocator settings of DARCOT_ALLOCATOR (else `default`); returns
    the allocator in use.

    Call it before torch is imported: the command starts again from the beginning (same interpreter, same
    arguments, same process id, so torchrun and job schedulers are not disturbed).
    """
    if os.environ.get(LOADED_ENV):
        return os.environ[LOADED_ENV]
    name, changes = settings(os.environ.get(ENV, default))
    os.environ[LOADED_ENV] = name
    if not changes:
        return name
    env = dict(os.environ)
    for key, value in changes.items():  # the user's own settings come last, so they win
        env[key] = SEPARATORS[key].join(filter(None, [value, os.environ.get(key)]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    return name  # not reached


def in_use() -> str:
    """The allocator of this process, read from its environment: 'jemalloc', 'retain' or 'system'."""
    if 'libjemalloc' in os.environ.get('LD_PRELOAD', ''):
        return 'jemalloc'
    return 'retain' if RETAIN_TUNABLES in os.environ.get('GLIBC_TUNABLES', '') else 'system'
