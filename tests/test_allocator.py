"""utils.allocator: choosing, finding and preloading the C allocator of the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils import allocator

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith('linux')
SCRIPT = ('import os, sys; sys.path.insert(0, os.getcwd()); from utils import allocator; '
          'print("first" if allocator.LOADED_ENV not in os.environ else "again", flush=True); '
          'print(allocator.preload(), allocator.in_use(), sys.argv[1:])')


def run_script(choice: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key not in ('LD_PRELOAD', allocator.LOADED_ENV)}
    result = subprocess.run([sys.executable, '-c', SCRIPT, 'arg one', '--flag'], cwd=ROOT, text=True,
                            capture_output=True, env=dict(env, DARCOT_ALLOCATOR=choice), check=True)
    return result.stdout.splitlines()


def test_unknown_choice_names_the_variable_and_the_choices():
    with pytest.raises(ValueError, match='DARCOT_ALLOCATOR=.*tcmalloc.*auto, mimalloc, jemalloc, system'):
        allocator.resolve('tcmalloc')


def test_system_choice_loads_nothing():
    assert allocator.resolve('system') == ('system', None)
    assert run_script('system') == ['first', "system system ['arg one', '--flag']"]


@pytest.mark.skipif(not LINUX, reason='allocators are preloaded on Linux only')
def test_missing_library_warns_and_falls_back(monkeypatch):
    monkeypatch.setattr(allocator, 'library', lambda name: None)
    with pytest.warns(UserWarning, match='jemalloc: its library is not installed .*apt install libjemalloc2'):
        assert allocator.resolve('jemalloc') == ('system', None)
    assert allocator.resolve('auto') == ('system', None)  # auto falls back silently


@pytest.mark.skipif(not LINUX, reason='allocators are preloaded on Linux only')
def test_auto_prefers_jemalloc_then_mimalloc(monkeypatch):
    installed = {'jemalloc': Path('/lib/libjemalloc.so.2'), 'mimalloc': Path('/site/libmimalloc.so')}
    monkeypatch.setattr(allocator, 'library', lambda name: installed.get(name))
    assert allocator.resolve('auto') == ('jemalloc', installed['jemalloc'])
    del installed['jemalloc']
    assert allocator.resolve('auto') == ('mimalloc', installed['mimalloc'])


@pytest.mark.skipif(not LINUX or allocator.library('mimalloc') is None,
                    reason='needs Linux and the cmeel-mimalloc wheel (requirements.txt)')
def test_preload_reexecutes_once_with_the_library_and_the_same_arguments():
    first, second = run_script('mimalloc')[-2:]
    # The command ran again from the start (same arguments), this time with mimalloc in LD_PRELOAD.
    assert first == 'again'
    assert second == "mimalloc mimalloc ['arg one', '--flag']"


@pytest.mark.skipif(not LINUX or allocator.library('jemalloc') is None,
                    reason='needs Linux and the system jemalloc (apt install libjemalloc2)')
def test_preload_jemalloc():
    assert run_script('jemalloc')[-1] == "jemalloc jemalloc ['arg one', '--flag']"
