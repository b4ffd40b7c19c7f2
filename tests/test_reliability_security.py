"""Security: checkpoints are only ever unpickled with `weights_only=True` (the official-pickle reader has its own
restricted unpickler), and no path read from a checkpoint, its config or a test set is used to write outside the
output folder. Malicious pickles are tested in test_official.py and test_test_py.py."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import trainer
from data.image_io import write_rgb
from tests.fixtures import Identity, tiny_argv, write_tiny_data
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.evaluate import restore_images

REPO = Path(__file__).resolve().parents[1]
UNPICKLERS = {('pickle', 'load'), ('pickle', 'loads'), ('pickle', 'Unpickler'), ('torch', 'load'),
              ('serialization', 'load')}
RESTRICTED_READER = 'utils/official.py'  # subclasses pickle.Unpickler with an allow-list of globals


pytestmark = pytest.mark.usefixtures('one_thread')


def unsafe_loads(source: str) -> list[str]:
    """Calls in `source` that unpickle without `weights_only=True`, as 'line: code'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, 'attr', None)
        if (owner_name, node.func.attr) not in UNPICKLERS:
            continue
        safe = any(k.arg == 'weights_only' and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in node.keywords)
        if not safe:
            found.append(f'{node.lineno}: {ast.unparse(node)}')
    return found


def test_the_scanner_catches_every_unsafe_form():
    assert unsafe_loads('import torch\nx = torch.load(path, weights_only=True)') == []
    assert len(unsafe_loads('torch.load(f)\ntorch.load(f, weights_only=False)\ntorch.load(f, weights_only=flag)\n'
                            'pickle.loads(b)\ntorch.serialization.load(f)')) == 5


def test_checkpoints_are_only_ever_loaded_with_weights_only():
    files = [path for path in REPO.rglob('*.py') if not any(part.startswith('.') for part in path.parts)]
    assert len(files) > 30
    offending = {}
    for path in files:
        relative = path.relative_to(REPO).as_posix()
        if relative == RESTRICTED_READER:
            continue
        problems = unsafe_loads(path.read_text(encoding='utf-8'))
        if problems:
            offending[relative] = problems
    assert offending == {}, f'unpickling without weights_only=True (use utils.checkpoint.load_checkpoint): {offending}'
    reader = (REPO / RESTRICTED_READER).read_text(encoding='utf-8')
    assert 'torch.load(' not in reader and 'class _RestrictedUnpickler(pickle.Unpickler)' in reader


def test_paths_in_a_checkpoints_config_are_never_written_to(tmp_path):
    data = write_tiny_data(tmp_path / 'data')
    trainer.main(tiny_argv(data, tmp_path / 'run', '--max_iters', '1'))
    state = load_checkpoint(tmp_path / 'run/ckpt/last.pth')
    elsewhere = tmp_path / 'elsewhere'
    state['config'].update(ckpt_dir=str(elsewhere / 'ckpt'), log_dir=str(elsewhere / 'log'),
                           val_dir=str(elsewhere / 'val'), data_root=str(elsewhere / 'data'))
    save_checkpoint(state, tmp_path / 'run/ckpt/last.pth')
    trainer.main(tiny_argv(data, tmp_path / 'run', '--max_iters', '2', '--resume', 'auto'))
    assert load_checkpoint(tmp_path / 'run/ckpt/last.pth')['step'] == 2
    assert not elsewhere.exists()  # the flags decide where a run writes, never the checkpoint it resumes


@pytest.mark.parametrize('name', ['../escaped', '/tmp/absolute', 'sub/../../escaped', ''])
def test_an_image_name_cannot_write_outside_the_output_folder(tmp_path, name):
    write_rgb(tmp_path / 'in.png', np.full((8, 8, 3), 50, np.uint8))
    with pytest.raises(ValueError, match='outside the output folder'):
        restore_images(Identity(), [(name, tmp_path / 'in.png')], tmp_path / 'out' / 'deep', device='cpu',
                       progress=False)
    assert not (tmp_path / 'out' / 'escaped.png').exists() and not list(tmp_path.rglob('escaped*'))
