"""`trainer.py` flags end to end: the official StepLR schedule, `--optimizer Adam` with `--map_lr`, every backbone
through train -> resume -> export -> test.py, and the `demo` preset trained a few iterations and evaluated."""

import json
import subprocess
import sys

import pytest
import torch

import trainer
from options import BACKBONES
from tests.fixtures import ROOT, records, test_script, tiny_argv, write_tiny_data
from utils.checkpoint import build_map, load_checkpoint

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp('data'))


@pytest.mark.slow
def test_step_schedule_divides_both_lrs_by_ten_every_step_epochs(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--step', '2', '--nEpochs', '5'))
    per_epoch = [records(tmp_path)[i] for i in range(0, 15, 3)]  # three iterations an epoch
    assert [r['lr_map'] for r in per_epoch] == pytest.approx([5e-5, 5e-5, 5e-6, 5e-6, 5e-7])
    assert [r['lr_critic'] for r in per_epoch] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6])
    assert [r['lr_map'] for r in records(tmp_path)[:3]] == pytest.approx([5e-5] * 3)  # constant within an epoch


def test_adam_with_its_own_map_lr_reaches_the_checkpoint(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--optimizer', 'Adam', '--map_lr', '2e-3', '--lr', '3e-4',
                           '--nEpochs', '1'))
    state = load_checkpoint(tmp_path / 'ckpt/last.pth')
    for name, lr in (('map', 2e-3), ('critic', 3e-4)):
        group = state[f'{name}_optimizer']['param_groups'][0]
        assert group['lr'] == pytest.approx(lr) and 'betas' in group  # RMSprop's groups have no betas
        assert all('exp_avg_sq' in value for value in state[f'{name}_optimizer']['state'].values())
    assert [r['lr_map'] for r in records(tmp_path)] == pytest.approx([2e-3] * 3)
    config = json.loads((tmp_path / 'log/config.json').read_text())
    assert (config['optimizer'], config['map_lr'], config['lr']) == ('Adam', 2e-3, 3e-4)


@pytest.mark.slow
@pytest.mark.parametrize('backbone', BACKBONES)
def test_every_backbone_trains_resumes_exports_and_is_evaluated(data, tmp_path, backbone):
    size = ['--dim', '48'] if backbone == 'PromptIR' else []  # PromptIR's prompts are sized for dim 48
    argv = tiny_argv(data, tmp_path, '--backbone', backbone, *size, '--nEpochs', '1')
    trainer.main([*argv, '--max_iters', '2'])
    trainer.main([*argv, '--resume'])
    state = load_checkpoint(tmp_path / 'ckpt/last.pth')
    assert (state['model']['backbone'], state['step'], state['epoch']) == (backbone, 3, 2)
    assert [r['step'] for r in records(tmp_path)] == [1, 2, 3]
    export = load_checkpoint(tmp_path / 'ckpt/last_map.pth')
    network, _ = build_map(export)
    for name, weights in network.state_dict().items():
        assert torch.equal(weights, state['map'][name]), name  # the export is the newest checkpoint's map
    save = tmp_path / 'results'
    assert test_script.main(['--ckpt', str(tmp_path / 'ckpt/last_map.pth'), '--test_dir', str(data / 'Test'),
                             '--task', 'derain', '--save_dir', str(save), '--amp', 'off', '--no_progress']) == 0
    (record,) = json.loads((save / 'summary.json').read_text())
    assert (record['task'], record['n_images']) == ('derain', 2)


@pytest.mark.slow
def test_the_demo_preset_trains_and_is_evaluated_end_to_end(tmp_path):
    root = tmp_path / 'demo'
    subprocess.run([sys.executable, '-m', 'data.demo', '--root', str(root)], cwd=ROOT, check=True,
                   capture_output=True)
    # float32, so that the test's time does not depend on whether this CPU computes bfloat16 natively.
    trainer.main(['--preset', 'demo', '--data_root', str(root / 'Train'), '--max_iters', '3', '--amp', 'off',
                  '--ckpt_dir', str(tmp_path / 'ckpt'), '--log_dir', str(tmp_path / 'log'), '--device', 'cpu'])
    config = json.loads((tmp_path / 'log/config.json').read_text())
    assert (config['preset'], config['dim'], config['patch_size'], config['optimizer']) == ('demo', 16, 32, 'Adam')
    assert len(config['de_type']) == 7 and [r['step'] for r in records(tmp_path)] == [1, 2, 3]
    save = tmp_path / 'results'
    assert test_script.main(['--ckpt', str(tmp_path / 'ckpt/last_map.pth'), '--test_dir', str(root / 'Test'),
                             '--save_dir', str(save), '--amp', 'off', '--no_progress']) == 0
    summary = json.loads((save / 'summary.json').read_text())
    assert {record['task'] for record in summary} == {'denoise', 'derain', 'dehaze', 'deblur', 'lowlight', 'mixed'}
    assert sorted(record['sigma'] for record in summary if record['task'] == 'denoise') == [15, 25, 50]
