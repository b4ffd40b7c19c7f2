"""`python -m utils.export`: safetensors model files, read back without pickle."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.fixtures import tiny_checkpoint, write_test_tree
from utils import export
from utils.checkpoint import CheckpointError, build_map, load_checkpoint, save_checkpoint
from utils.official import load_any_checkpoint

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('darcot_test_script_export', REPO / 'test.py')
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def test_a_safetensors_file_restores_exactly_what_its_checkpoint_does(tmp_path, monkeypatch, capsys):
    checkpoint = tiny_checkpoint(tmp_path / 'map.pth', dim=8)
    export.main(['--ckpt', str(checkpoint), '--safetensors', str(tmp_path / 'map.safetensors')])
    assert 'map.safetensors: MRCNet' in capsys.readouterr().out
    metadata = json.loads(load_file_metadata(tmp_path / 'map.safetensors')['model'])
    assert metadata == json.loads(json.dumps(load_checkpoint(checkpoint)['model']))  # tuples come back as lists

    def no_pickle(*args, **kwargs):
        raise AssertionError('a safetensors file was read through pickle')

    monkeypatch.setattr(pickle, 'Unpickler', no_pickle)
    monkeypatch.setattr(torch, 'load', no_pickle)
    loaded, note = load_any_checkpoint(tmp_path / 'map.safetensors')
    monkeypatch.undo()
    assert note is None
    x = torch.rand(1, 3, 19, 26)
    with torch.no_grad():
        (from_pth, _), (from_safetensors, _) = (build_map(c)[0](x) for c in (load_checkpoint(checkpoint), loaded))
    assert torch.equal(from_pth, from_safetensors)


def load_file_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework='pt') as handle:
        return handle.metadata()


def test_a_training_checkpoint_exports_its_averaged_weights(tmp_path):
    state = load_checkpoint(tiny_checkpoint(tmp_path / 'map.pth', dim=8))
    averaged = {name: value + 1 for name, value in state['map'].items()}
    save_checkpoint({**state, 'map_ema': averaged, 'ema_decay': 0.99}, tmp_path / 'last.pth')
    export.main(['--ckpt', str(tmp_path / 'last.pth'), '--safetensors', str(tmp_path / 'ema.safetensors')])
    loaded = export.load_safetensors(tmp_path / 'ema.safetensors')
    assert loaded['ema_decay'] == 0.99
    assert all(torch.equal(loaded['map'][name], value) for name, value in averaged.items())


def test_test_py_scores_a_safetensors_file_as_its_checkpoint(tmp_path):
    tree = tmp_path / 'tree'
    write_test_tree(tree)
    checkpoint = tiny_checkpoint(tmp_path / 'map.pth', dim=8)
    export.save_safetensors(load_checkpoint(checkpoint), tmp_path / 'map.safetensors')
    summaries = []
    for name, path in (('pth', checkpoint), ('safetensors', tmp_path / 'map.safetensors')):
        assert test_script.main(['--amp', 'off', '--ckpt', str(path), '--test_dir', str(tree), '--save_dir',
                                 str(tmp_path / name), '--task', 'derain', '--no_progress']) == 0
        summaries.append(json.loads((tmp_path / name / 'summary.json').read_text()))
    assert [r['psnr'] for r in summaries[0]] == [r['psnr'] for r in summaries[1]]


def test_a_file_without_its_spec_or_with_other_tensors_is_refused_clearly(tmp_path):
    state = load_checkpoint(tiny_checkpoint(tmp_path / 'map.pth', dim=8))
    bare = tmp_path / 'bare.safetensors'
    save_file({name: value.contiguous() for name, value in state['map'].items()}, str(bare))
    with pytest.raises(CheckpointError, match='no darcot model spec.*python -m utils.export'):
        load_any_checkpoint(bare)

    wrong = tmp_path / 'wrong.safetensors'
    export.save_safetensors(state, wrong)
    tensors, metadata = load_file(str(wrong)), load_file_metadata(wrong)
    spec = json.loads(metadata['model'])
    spec['args']['dim'] = 16
    save_file(tensors, str(wrong), metadata={**metadata, 'model': json.dumps(spec)})
    with pytest.raises(CheckpointError, match='mis-shaped'):
        build_map(load_any_checkpoint(wrong)[0])

    (tmp_path / 'cut.safetensors').write_bytes(bare.read_bytes()[:100])
    with pytest.raises(CheckpointError, match='not a readable safetensors file'):
        load_any_checkpoint(tmp_path / 'cut.safetensors')


def test_the_output_name_must_say_safetensors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export.main(['--ckpt', str(tmp_path / 'x.pth'), '--safetensors', str(tmp_path / 'out.pt')])
    assert 'must end in .safetensors' in capsys.readouterr().err


def needs_onnx() -> None:
    for package in ('onnx', 'onnxruntime', 'onnxscript'):
        pytest.importorskip(package, reason=f'{package} is not installed (pip install -r requirements-export.txt)')
    if not hasattr(torch.compiler, 'is_exporting'):
        pytest.skip(f'the ONNX exporter needs torch 2.6 or newer, this is {torch.__version__}')


@pytest.fixture(scope='module')
def onnx_export(tmp_path_factory):
    """A tiny map exported with dynamic height and width, through the command line."""
    needs_onnx()
    folder = tmp_path_factory.mktemp('onnx')
    checkpoint = tiny_checkpoint(folder / 'map.pth', dim=8)
    export.main(['--ckpt', str(checkpoint), '--onnx', str(folder / 'map.onnx')])
    assert sorted(p.name for p in folder.iterdir()) == ['map.onnx', 'map.pth']  # one file, nothing left beside it
    return checkpoint, folder / 'map.onnx'


@pytest.mark.slow
def test_an_onnx_export_restores_any_size_as_pytorch_does(onnx_export, capsys):
    checkpoint, path = onnx_export
    network = build_map(load_checkpoint(checkpoint))[0].eval()
    onnx_map = export.OnnxMap(path)
    assert onnx_map.checkpoint['model'] == json.loads(json.dumps(load_checkpoint(checkpoint)['model']))
    for shape in ((1, 3, 16, 16), (1, 3, 23, 41), (2, 3, 64, 40)):  # odd sizes, a batch of two
        x = torch.rand(shape)
        with torch.no_grad():
            expected, expected_embedding = network(x)
        restored, embedding = onnx_map(x)
        assert restored.shape == x.shape
        # fp32 in two kernel libraries: the export's own check bound (utils.export.CHECK_TOLERANCE)
        assert (restored - expected).abs().max() <= export.CHECK_TOLERANCE
        assert (embedding - expected_embedding).abs().max() <= export.CHECK_TOLERANCE


@pytest.mark.slow
def test_test_py_scores_an_onnx_export_as_its_checkpoint(onnx_export, tmp_path, capsys):
    checkpoint, path = onnx_export
    tree = tmp_path / 'tree'
    write_test_tree(tree)
    summaries = []
    for name, model, tiles in (('pth', checkpoint, []), ('onnx', path, []), ('pth_tiled', checkpoint, ['--tile', '16']),
                               ('onnx_tiled', path, ['--tile', '16'])):
        assert test_script.main(['--amp', 'off', '--ckpt', str(model), '--test_dir', str(tree), '--save_dir',
                                 str(tmp_path / name), '--task', 'all', '--tile_overlap', '4', '--no_progress',
                                 *tiles]) == 0
        summaries.append(json.loads((tmp_path / name / 'summary.json').read_text()))
    assert 'run by ONNX Runtime' in capsys.readouterr().out
    for pth, onnx in [*zip(summaries[0], summaries[1], strict=True), *zip(summaries[2], summaries[3], strict=True)]:
        assert (pth['task'], pth.get('sigma')) == (onnx['task'], onnx.get('sigma'))
        assert abs(pth['psnr'] - onnx['psnr']) < 0.01


@pytest.mark.slow
def test_a_fixed_size_onnx_export_says_its_size_and_refuses_others(tmp_path, capsys):
    needs_onnx()
    checkpoint = tiny_checkpoint(tmp_path / 'map.pth', dim=8)
    export.main(['--ckpt', str(checkpoint), '--onnx', str(tmp_path / 'map.onnx'), '--height', '24', '--width', '40'])
    written = tmp_path / 'map_40x24.onnx'
    assert '40x24 images only' in capsys.readouterr().out and written.is_file()
    onnx_map = export.OnnxMap(written)
    assert onnx_map(torch.rand(1, 3, 24, 40))[0].shape == (1, 3, 24, 40)
    with pytest.raises(ValueError, match='exported for 40x24 images only'):
        onnx_map(torch.rand(1, 3, 24, 48))


def test_onnx_export_flags_are_checked_before_any_work(tmp_path, capsys):
    for flags, message in ((['--onnx', 'm.pt'], 'must end in .onnx'), (['--onnx', 'm.onnx', '--height', '32'],
                                                                        'together'), ([], 'give --safetensors')):
        with pytest.raises(SystemExit):
            export.main(['--ckpt', str(tmp_path / 'x.pth'), *flags])
        assert message in capsys.readouterr().err
