"""The C memory allocator of the entry points: jemalloc or mimalloc instead of glibc's malloc on Linux.

glibc serves every block above 32 MiB with mmap and hands it back to the kernel on free, so each training step
pays the kernel for fresh, zeroed pages again: at paper size on a 2-core CPU that was about a third of an
iteration. An allocator that keeps freed pages for the next step removes that cost (BENCHMARKS.md): jemalloc
with its decay off (the fastest, at glibc's peak memory), or mimalloc purging pages unused for six seconds.

An allocator has to be in place before the process allocates anything, so `preload()` re-executes the
running command once with the library in LD_PRELOAD; `trainer.py`, `test.py` and the benchmarks call it
first thing. The environment variable DARCOT_ALLOCATOR chooses: `auto` (the default: jemalloc where the
system has it, e.g. `apt install libjemalloc2`, else mimalloc, which `requirements.txt` installs as the
`cmeel-mimalloc` wheel, else the system's), `jemalloc`, `mimalloc` or `system` (leave the process as it is).
Your own MALLOC_CONF / MIMALLOC_* settings take precedence over the tuning below. Elsewhere than Linux
nothing changes.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
from importlib import metadata
from pathlib import Path

ENV = 'DARCOT_ALLOCATOR'
CHOICES = ('auto', 'mimalloc', 'jemalloc', 'system')
LOADED_ENV = '_DARCOT_ALLOCATOR_LOADED'
# jemalloc keeps freed pages for reuse (no decay): a step reuses the previous step's pages. mimalloc kept that
# way ran as fast (9.7 s) but held 17.7 GB at paper size; purging pages unused for 6 s (an iteration is about
# 10) kept 15.0 GB for 10.0 to 12.7 s in two runs, against glibc's 13.3 s (BENCHMARKS.md).
TUNING = {'jemalloc': {'MALLOC_CONF': 'dirty_decay_ms:-1,muzzy_decay_ms:-1'},
          'mimalloc': {'MIMALLOC_PURGE_DELAY': '6000'}}


def library(name: str) -> Path | None:
    """The shared library of allocator `name`, or None where it is not installed."""
    if name == 'mimalloc':
        try:
            found = metadata.distribution('cmeel-mimalloc').locate_file('cmeel.prefix/lib/libmimalloc.so')
        except metadata.PackageNotFoundError:
            return None
        return Path(str(found)) if Path(str(found)).is_file() else None
    if name == 'jemalloc':
        patterns = ('/usr/lib/*/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2', '/usr/lib64/libjemalloc.so.2',
                    '/usr/local/lib/libjemalloc.so.2')
        matches = sorted(match for pattern in patterns for match in glob.glob(pattern))
        return Path(matches[0]) if matches else None
    raise ValueError(f'unknown allocator {name!r}; choose one of {", ".join(CHOICES)}')


def resolve(choice: str) -> tuple[str, Path | None]:
    """(allocator name, library) for a DARCOT_ALLOCATOR value; ('system', None) where nothing else is there."""
    if choice not in CHOICES:
        raise ValueError(f'{ENV}={choice!r}: choose one of {", ".join(CHOICES)}')
    if choice == 'system' or not sys.platform.startswith('linux'):
        return 'system', None
    for name in (('jemalloc', 'mimalloc') if choice == 'auto' else (choice,)):
        path = library(name)
        if path is not None:
            return name, path
    if choice != 'auto':
        warnings.warn(f'{ENV}={choice}: its library is not installed (mimalloc: pip install cmeel-mimalloc; '
                      'jemalloc: apt install libjemalloc2); running with the system allocator', stacklevel=2)
    return 'system', None


def preload() -> str:
    """Re-executes this command once with the chosen allocator preloaded; returns the allocator in use.

    Call it before anything heavy is imported: the command starts again from the beginning (same
    interpreter, same arguments, same process id, so torchrun and job schedulers are not disturbed).
    """
    if os.environ.get(LOADED_ENV):
        return os.environ[LOADED_ENV]
    name, path = resolve(os.environ.get(ENV, 'auto'))
    if path is None or path.name in os.environ.get('LD_PRELOAD', ''):
        os.environ[LOADED_ENV] = name
        return name
    env = {**TUNING[name], **os.environ}  # the user's own MIMALLOC_* / MALLOC_CONF settings win
    env['LD_PRELOAD'] = ':'.join(filter(None, [str(path), os.environ.get('LD_PRELOAD')]))
    env[LOADED_ENV] = name
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    return name  # not reached


def in_use() -> str:
    """The allocator of this process: mimalloc or jemalloc where one is preloaded, else 'system'."""
    preloaded = os.environ.get('LD_PRELOAD', '')
    return next((name for name in ('jemalloc', 'mimalloc') if f'lib{name}' in preloaded), 'system')
