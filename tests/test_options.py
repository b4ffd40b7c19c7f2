"""`options.parse_args`: the official README's commands, presets, the resolved config, and errors that name the flag."""

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from options import BACKBONES, PRESETS, parse_args

README_3D = ('--batchSize=2 --nEpochs=50 --pairnum=10000000 --Sigma=10000 --sigma=1 --de_type derain dehaze '
             'denoise_15 denoise_25 denoise_50 --patch_size=128  --type all --gpus=0 --backbone=MRCNet --step=15 '
             '--resume=none')
README_5D = ('--batchSize=2 --nEpochs=55 --pairnum=10000000 --Sigma=10000 --sigma=1 --de_type derain dehaze '
             'denoise_15 denoise_25 denoise_50 deblur lowlight --patch_size=128 --type all --gpus=0 --backbone=MRCNet '
             '--step=15 --resume=none')


def test_the_official_readme_commands_parse():
    config = parse_args(shlex.split(README_3D))
    assert (config.batchSize, config.nEpochs, config.pairnum, config.Sigma, config.sigma) == (2, 50, 10_000_000,
                                                                                             10000.0, 1.0)
    assert config.de_type == ('derain', 'dehaze', 'denoise_15', 'denoise_25', 'denoise_50')
    assert (config.patch_size, config.type, config.device, config.backbone, config.step, config.resume) == (
        128, 'all', '0', 'MRCNet', 15, 'none')  # --gpus, the official name of --device
    five = parse_args(shlex.split(README_5D))
    assert five.nEpochs == 55 and five.de_type[-2:] == ('deblur', 'lowlight')
    assert parse_args(shlex.split(README_3D) + ['--pairnum', '0']).pairnum == 0


def test_defaults_are_the_papers():
    config = parse_args([])
    assert (config.dim, config.num_blocks, config.num_refinement_blocks, config.heads) == (48, (4, 6, 6, 8), 4,
                                                                                           (1, 2, 4, 8))
    assert (config.lr, config.optimizer, config.Sigma, config.sigma, config.objective) == (1e-4, 'RMSprop', 10000.0,
                                                                                           1.0, 'ot')
    assert config.train_roots['derain'] == 'data/Train/Derain' and config.ckpt_dir == 'checkpoints/all_MRCNet'


def test_a_preset_sets_defaults_and_explicit_flags_win():
    tiny = parse_args(['--preset', 'tiny'])
    assert (tiny.dim, tiny.num_blocks, tiny.patch_size) == (8, (1, 1, 1, 1), 32)
    assert parse_args(['--preset', 'tiny', '--dim', '16', '--patch_size', '64']).dim == 16
    demo = parse_args(['--preset', 'demo'])
    assert demo.max_minutes == PRESETS['demo']['max_minutes'] and demo.de_type == tuple(PRESETS['demo']['de_type'])
    assert demo.train_roots['lowlight'].startswith('data/demo/Train')
    assert demo.cache and demo.identity_init  # booleans a preset turns on, a --no- flag turns off
    off = parse_args(['--preset', 'demo', '--no-amp', '--no-cache', '--no-identity_init'])
    assert not (off.cache or off.identity_init) and off.amp == 'off'


def test_data_root_sets_every_root_and_a_task_flag_overrides_one():
    config = parse_args(['--data_root', 'elsewhere', '--derain_dir', 'rain/only'])
    assert config.train_roots['dehaze'] == 'elsewhere/Dehaze'
    assert config.train_roots['derain'] == 'rain/only'


def test_the_config_is_plain_data():
    plain = parse_args(['--replication', 'derain=3', '--max_minutes', '2']).to_dict()
    assert json.loads(json.dumps(plain)) == plain  # lists, not tuples: JSON and weights_only loads keep it as is
    assert plain['replication'] == {'derain': 3} and plain['num_blocks'] == [4, 6, 6, 8]


@pytest.mark.parametrize('argv, flag', [
    (['--patch_size', '100'], '--patch_size'),
    (['--de_type', 'derain', 'desnow'], '--de_type'),
    (['--batchSize', '0'], '--batchSize'),
    (['--lr', '-1'], '--lr'),
    (['--Sigma', 'nan'], '--Sigma'),
    (['--optimizer', 'SGD'], '--optimizer'),
    (['--backbone', 'SwinIR'], '--backbone'),
    (['--resume', 'no/such/file.pth'], '--resume'),
    (['--dim', '12', '--heads', '1', '2', '4', '7'], '--heads'),
    (['--objective', 'l1', '--pairnum', '0'], '--pairnum'),
    (['--replication', 'derain=0'], 'replication'),
    (['--max_minutes', '0'], '--max_minutes'),
    (['--val_split', '2', '--val_dir', 'data/Test'], '--val_split'),
    (['--val_split', '-1'], '--val_split'),
    (['--val_tile', '30'], '--val_tile'),
])
def test_an_invalid_value_fails_fast_naming_its_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize('argv, amp', [([], 'auto'), (['--preset', 'demo'], 'auto'), (['--amp'], 'on'),
                                       (['--amp', 'off'], 'off'), (['--no-amp'], 'off'), (['--amp', 'on'], 'on')])
def test_amp_is_auto_unless_asked(argv, amp):
    assert parse_args(argv).amp == amp


def test_the_backbone_choices_are_the_rows_of_models():
    from net import MODELS

    assert BACKBONES == tuple(MODELS)


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('script, argv', [('trainer.py', ['--help']), ('trainer.py', ['--no_such_flag']),
                                          ('test.py', ['--help']), ('trainer.py', ['--preset', 'demo', '--amp', 'x'])])
def test_help_and_flag_errors_answer_before_torch_is_imported(script, argv):
    code = ('import runpy, sys; sys.argv = [sys.argv[1], *sys.argv[2:]]\n'
            'try:\n    runpy.run_path(sys.argv[0], run_name="__main__")\n'
            'except SystemExit:\n    pass\n'
            'print("torch imported" if "torch" in sys.modules else "no torch")')
    result = subprocess.run([sys.executable, '-c', code, script, *argv], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == 'no torch', result.stderr


def test_resume_alone_means_auto_as_in_test_py():
    assert parse_args(['--resume']).resume == 'auto'
    assert parse_args([]).resume == 'none'
    assert parse_args(['--device', 'cpu']).device == 'cpu' and parse_args([]).device == 'auto'


def help_entries(script: str, *argv: str) -> dict[str, str]:
    """`script --help` as {first flag of an entry: its whole text, whitespace collapsed}."""
    env = {**os.environ, 'COLUMNS': '200'}
    text = subprocess.run([sys.executable, script, *argv, '--help'], cwd=ROOT, capture_output=True, text=True,
                          check=True, env=env).stdout
    entries: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith('  -'):
            current = line.split()[0].rstrip(',')
            entries[current] = [line]
        elif current and line.startswith('   '):
            entries[current].append(line)
        else:
            current = None
    return {flag: ' '.join(' '.join(lines).split()) for flag, lines in entries.items()}


def test_the_two_help_outputs_agree_on_every_shared_flag():
    from options import build_parser

    def actions(parser):
        return {flag: action for action in parser._actions for flag in action.option_strings}

    trainer, tester = actions(build_parser()), actions(runpy.run_path(str(ROOT / 'test.py'))['build_parser']())
    shared = (set(trainer) & set(tester)) - {'-h', '--help'}
    assert {'--device', '--amp', '--no-amp', '--resume'} <= shared
    for flag in shared - {'--resume', '--sigma'}:  # test.py --sigma: a deprecated alias, named as such
        assert (trainer[flag].help, trainer[flag].default) == (tester[flag].help, tester[flag].default), flag
    # --resume continues training in one and an evaluation in the other: the same words say so in both.
    assert all(entries['--resume'].help.startswith('continue an interrupted run') for entries in (trainer, tester))
    assert '--device DEVICE' in help_entries('test.py')['--device']


def test_help_documents_every_flag_and_what_each_preset_sets():
    from options import build_parser

    assert [action.option_strings for action in build_parser()._actions if not action.help] == []
    text = subprocess.run([sys.executable, 'trainer.py', '--help'], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={**os.environ, 'COLUMNS': '200'}).stdout
    presets = text.split('\npresets:\n')[1].split('\n\n')[0]
    entries = dict(re.findall(r'^  (\w+): (.*?)(?=^  \w+: |\Z)', presets, re.M | re.S))
    assert set(entries) == set(PRESETS)
    for name, values in PRESETS.items():
        entry = ' '.join(entries[name].split())
        assert all(f'--{key} ' in entry + ' ' or f'--no-{key} ' in entry + ' ' for key in values), name
    assert '(default: 128)' in help_entries('trainer.py')['--patch_size']
    assert '(default: 32)' in help_entries('trainer.py', '--preset', 'demo')['--patch_size']
