"""utils.allocator: choosing and applying the C allocator settings of the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils import allocator

ROOT = Path(__file__).resolve().parents[1]
GLIBC = (allocator.glibc_version() or (0, 0)) >= (2, 26)
SCRIPT = ('import os, sys; sys.path.insert(0, os.getcwd()); from utils import allocator; '
          'print("first" if allocator.LOADED_ENV not in os.environ else "again", flush=True); '
          'print(allocator.preload(), allocator.in_use(), sys.argv[1:]); print(os.environ.get("GLIBC_TUNABLES"))')
# Touches a 64 MiB block, frees it and prints how much of it the process still holds (MiB).
HELD_AFTER_FREE = ('import ctypes, os, sys; sys.path.insert(0, os.getcwd()); from utils import allocator; '
                   'allocator.preload(); libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; '
                   'rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE"); '
                   'before = rss(); block = libc.malloc(64 << 20); ctypes.memset(block, 1, 64 << 20); '
                   'libc.free(ctypes.c_void_p(block)); print((rss() - before) >> 20)')


def run(code: str, choice: str, **extra_env: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key not in allocator.VARIABLES}
    result = subprocess.run([sys.executable, '-c', code, 'arg one', '--flag'], cwd=ROOT, text=True,
                            capture_output=True, env=dict(env, DARCOT_ALLOCATOR=choice, **extra_env), check=True)
    return result.stdout.splitlines()


def test_unknown_choice_names_the_variable_and_the_choices():
    with pytest.raises(ValueError, match='DARCOT_ALLOCATOR=.*tcmalloc.*retain, jemalloc, system'):
        allocator.settings('tcmalloc')


def test_system_choice_changes_nothing():
    assert allocator.settings('system') == ('system', {})
    assert run(SCRIPT, 'system') == ['first', "system system ['arg one', '--flag']", 'None']


@pytest.mark.skipif(not GLIBC, reason='needs glibc 2.26 or newer (Linux)')
def test_retain_reexecutes_once_with_the_tunables_and_the_same_arguments():
    first, result, tunables = run(SCRIPT, 'retain')[-3:]
    assert first == 'again'  # the command ran again from the start, with the same arguments
    assert result == "retain retain ['arg one', '--flag']"
    assert tunables == allocator.RETAIN_TUNABLES


@pytest.mark.skipif(not GLIBC, reason='needs glibc 2.26 or newer (Linux)')
def test_the_users_own_tunables_come_last_and_win():
    tunables = run(SCRIPT, 'retain', GLIBC_TUNABLES='glibc.malloc.top_pad=0')[-1]
    assert tunables == allocator.RETAIN_TUNABLES + ':glibc.malloc.top_pad=0'


@pytest.mark.skipif(not GLIBC, reason='needs glibc 2.26 or newer (Linux)')
def test_retain_keeps_a_freed_large_block_that_glibc_otherwise_unmaps():
    assert int(run(HELD_AFTER_FREE, 'system')[-1]) < 16
    assert int(run(HELD_AFTER_FREE, 'retain')[-1]) >= 60


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='jemalloc is preloaded on Linux only')
def test_missing_jemalloc_warns_and_retains_with_glibc(monkeypatch):
    monkeypatch.setattr(allocator, 'jemalloc_library', lambda: None)
    with pytest.warns(UserWarning, match='jemalloc is not installed .*apt install libjemalloc2.*retain'):
        name, _ = allocator.settings('jemalloc')
    assert name == ('retain' if GLIBC else 'system')


@pytest.mark.skipif(not sys.platform.startswith('linux') or allocator.jemalloc_library() is None,
                    reason='needs Linux and the system jemalloc (apt install libjemalloc2)')
def test_preload_jemalloc():
    assert run(SCRIPT, 'jemalloc')[-2] == "jemalloc jemalloc ['arg one', '--flag']"


def test_the_default_retains_only_for_large_cpu_blocks():
    assert allocator.default_choice(on_cpu=True, largest_block_bytes=allocator.RETAIN_FROM_BYTES) == 'retain'
    assert allocator.default_choice(on_cpu=True, largest_block_bytes=allocator.RETAIN_FROM_BYTES - 1) == 'system'
    assert allocator.default_choice(on_cpu=False, largest_block_bytes=1 << 40) == 'system'


def test_hidden_gpus_are_not_present(monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    assert not allocator.gpu_present()


def test_the_trainer_sizes_its_largest_block_from_the_flags():
    import trainer
    from options import parse_flags

    paper, demo = parse_flags([]), parse_flags(['--preset', 'demo'])
    assert trainer.largest_block_bytes(paper) == 2 * 2 * int(48 * 2.66) * 128 ** 2 * 4  # the GDFN's expansion
    assert trainer.largest_block_bytes(paper) >= allocator.RETAIN_FROM_BYTES > trainer.largest_block_bytes(demo)


def test_preload_takes_the_default_where_the_variable_is_unset():
    env = {key: value for key, value in os.environ.items() if key not in (*allocator.VARIABLES, allocator.ENV)}
    code = ('import os, sys; sys.path.insert(0, os.getcwd()); from utils import allocator; '
            'print(allocator.preload("system"))')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True, capture_output=True, env=env, check=True)
    assert result.stdout.split() == ['system']
