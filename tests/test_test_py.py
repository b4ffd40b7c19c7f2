"""test.py end to end: every task of a tiny test tree, its reports, reruns, official and malicious checkpoints,
the no-ground-truth mode on awkward images, flag errors, and, where `../shared/data` exists, real test sets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.image_io import read_rgb, write_rgb
from data.layouts import shared_data
from tests.fixtures import test_script, tiny_checkpoint, write_test_tree

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = shared_data()


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / 'Test'
    write_test_tree(root)
    return root


def run(*argv) -> int:
    """test.py in float32 (`--amp off`), whatever the CPU."""
    return test_script.main(['--amp', 'off'] + [str(arg) for arg in argv] + ['--no_progress'])


def test_averaged_weights_are_named_in_the_output_and_the_report(tree, tmp_path, capsys):
    path = tiny_checkpoint(tmp_path / 'ema.pth')
    state = torch.load(path, weights_only=True)
    torch.save({**state, 'ema_decay': 0.999}, path)
    assert run('--ckpt', path, '--test_dir', tree, '--save_dir', tmp_path / 'out', '--task', 'mixed') == 0
    assert 'weights averaged, EMA decay 0.999' in capsys.readouterr().out
    assert 'EMA decay 0.999' in (tmp_path / 'out/results.md').read_text()


def test_a_map_whose_training_stopped_early_says_so_first(tree, tmp_path, capsys):
    path = tiny_checkpoint(tmp_path / 'stopped.pth')
    state = torch.load(path, weights_only=True)
    state['training'] = {'steps': 40, 'planned_steps': 322, 'stopped_by': '--max_minutes 6.5 reached',
                         'precision': {'amp': 'auto', 'dtype': 'float32', 'reason': '...'}}
    torch.save(state, path)
    assert run('--ckpt', path, '--test_dir', tree, '--save_dir', tmp_path / 'out', '--task', 'mixed') == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith('warning: this map was trained for 40 of its 322 planned iterations (--max_minutes 6.5')
    assert json.loads((tmp_path / 'out/summary.json').read_text())[0]['precision'] == 'float32'
    state['training'].update(steps=506, stopped_by=None)
    torch.save(state, path)
    assert run('--ckpt', path, '--test_dir', tree, '--save_dir', tmp_path / 'out', '--task', 'mixed',
               '--overwrite') == 0
    assert 'warning' not in capsys.readouterr().out


def test_a_map_chosen_on_the_tested_folder_says_so(tree, tmp_path, capsys):
    path = tiny_checkpoint(tmp_path / 'best_map.pth')
    state = torch.load(path, weights_only=True)
    for val_dir, chosen, warned in ((tree, True, True), (tree / 'mixed', True, True), (tmp_path / 'val', True, False),
                                    (tree, False, False)):
        state['training'] = {'steps': 3, 'planned_steps': 3, 'val_dir': str(val_dir), 'chosen_by_validation': chosen}
        torch.save(state, path)
        assert run('--ckpt', path, '--test_dir', tree, '--save_dir', tmp_path / 'out', '--task', 'mixed',
                   '--overwrite') == 0
        printed, report = capsys.readouterr().out, (tmp_path / 'out/results.md').read_text()
        assert ('weights were chosen on the test set' in printed) == warned, (val_dir, chosen)
        assert ('weights were chosen on the test set' in report) == warned


def test_the_official_protocol_saves_the_inputs_it_fed(checkpoint, tree, tmp_path):
    from data.test_sets import find_test_sets

    out = tmp_path / 'out'
    assert run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', out, '--task', 'denoise', '--noise_sigma', 25,
               '--protocol', 'official', '--save_inputs') == 0
    (official,), _ = find_test_sets(tree, ['denoise'], sigmas=(25,), protocol='official')
    for index, pair in enumerate(official.pairs):
        noisy, clean = official.images(index)
        assert np.array_equal(read_rgb(out / 'denoise/bsd68_sigma25/input' / f'{pair.name}.png'), noisy)
        assert read_rgb(out / 'denoise/bsd68_sigma25/restored' / f'{pair.name}.png').shape == clean.shape
    assert 'seed-1850 noise stream' in (out / 'results.md').read_text()


def test_the_old_sigma_flag_warns_and_sets_the_noise_levels():
    with pytest.warns(FutureWarning, match='--noise_sigma'):
        args = test_script.parse_args(['--ckpt', 'x.pth', '--sigma', '15', '50'])
    assert args.noise_sigma == [15, 50]
    assert test_script.parse_args(['--ckpt', 'x.pth']).noise_sigma == [15, 25, 50]


def test_every_task_with_reports_and_reruns(checkpoint, tree, tmp_path, capsys):
    out = tmp_path / 'results'
    assert run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', out, '--noise_sigma', 25, '--compare') == 0
    printed = capsys.readouterr().out
    records = json.loads((out / 'summary.json').read_text())
    assert [(r['task'], r['set'], r['sigma']) for r in records] == [
        ('denoise', 'bsd68', 25), ('derain', 'Rain100L', None), ('dehaze', 'dehaze', None), ('deblur', 'deblur', None),
        ('lowlight', 'lowlight', None), ('mixed', 'mixed', None)]
    assert all(r['protocol'] == 'pad' and r['n_images'] >= 1 and r['lpips'] is None for r in records)
    assert 'input PSNR' in printed and 'denoise/bsd68' in printed and 'LPIPS not computed' in printed
    markdown = (out / 'results.md').read_text()
    assert '31.23 / 0.888' in markdown and 'tiny.pth' in markdown  # the paper's 5-task BSD68 sigma 25
    assert len(list((out / 'derain' / 'Rain100L' / 'compare').iterdir())) == 2

    with pytest.raises(SystemExit, match='--resume'):
        run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', out, '--noise_sigma', 25)
    before = (out / 'mixed' / 'mixed' / 'metrics.csv').read_text()
    assert run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', out, '--noise_sigma', 25, '--resume') == 0
    assert (out / 'mixed' / 'mixed' / 'metrics.csv').read_text() == before  # nothing redone
    assert json.loads((out / 'summary.json').read_text()) == [{**r, 'seconds_per_image': pytest.approx(
        r['seconds_per_image'])} for r in records]
    assert run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', out, '--task', 'mixed', '--overwrite',
               '--protocol', 'official', '--y_channel', '--tile', 16, '--tile_overlap', 4) == 0
    (record,) = json.loads((out / 'summary.json').read_text())
    assert (record['protocol'], record['y_channel']) == ('official', True)


def test_missing_sets_are_named(checkpoint, tree, tmp_path, capsys):
    with pytest.raises(SystemExit, match='no test set for --task rain13k'):
        run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', tmp_path / 'r', '--task', 'rain13k')
    assert 'not found: rain13k' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='does not exist'):
        run('--ckpt', checkpoint, '--test_dir', tmp_path / 'nowhere', '--save_dir', tmp_path / 'r')


def test_official_checkpoints_are_accepted_directly(tree, tmp_path, monkeypatch, capsys):
    from net import Critic, MRCNet
    from tests.fixtures import OFFICIAL_TINY, as_official, model_res_module, save_official

    module = model_res_module()
    torch.manual_seed(0)
    official = tmp_path / 'official.pth'
    save_official(official, {'epoch': 3, 'Tnet': as_official(MRCNet(**OFFICIAL_TINY), module),
                             'Fnet': as_official(Critic(32), module)}, module, monkeypatch)
    assert run('--ckpt', official, '--test_dir', tree, '--task', 'mixed', '--save_dir', tmp_path / 'r') == 0
    assert 'converted from the official checkpoint official.pth' in capsys.readouterr().out


def test_a_malicious_checkpoint_never_runs(tree, tmp_path):
    marker = tmp_path / 'pwned'

    class RunsShell:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    torch.save({'Tnet': RunsShell()}, tmp_path / 'evil.pth')
    with pytest.raises(SystemExit, match='refused and nothing in the file was executed'):
        run('--ckpt', tmp_path / 'evil.pth', '--test_dir', tree, '--save_dir', tmp_path / 'r')
    assert not marker.exists()


def test_restoring_photos_of_any_kind(checkpoint, tmp_path, capsys):
    photos = tmp_path / 'photos'
    write_rgb(photos / 'odd.png', np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8))
    (photos / 'trip').mkdir()
    cv2.imwrite(str(photos / 'trip' / 'grey.png'), np.full((9, 11), 120, np.uint8))
    cv2.imwrite(str(photos / 'rgba.png'), np.full((10, 10, 4), 200, np.uint8))
    cv2.imwrite(str(photos / 'deep.png'), np.full((8, 12, 3), 40000, np.uint16))
    assert run('--ckpt', checkpoint, '--input', photos, '--output', tmp_path / 'out') == 0
    sizes = {name: read_rgb(tmp_path / 'out' / kind / f'{name}.png').shape
             for kind in ('restored', 'residual') for name in ('odd', 'trip/grey', 'rgba', 'deep')}
    assert sizes == {'odd': (13, 17, 3), 'trip/grey': (9, 11, 3), 'rgba': (10, 10, 3), 'deep': (8, 12, 3)}
    assert 'restored 4 image(s)' in capsys.readouterr().out

    (photos / 'broken.jpg').write_bytes(b'\xff\xd8\xff truncated')
    assert run('--ckpt', checkpoint, '--input', photos, '--output', tmp_path / 'out', '--resume') == 1
    assert 'broken.jpg' in capsys.readouterr().err
    assert run('--ckpt', checkpoint, '--input', photos / 'odd.png', '--output', tmp_path / 'one') == 0
    assert (tmp_path / 'one' / 'restored' / 'odd.png').is_file()


def test_a_4k_photo_that_does_not_fit_suggests_tiles_and_fits_in_them(checkpoint, tmp_path, monkeypatch):
    from utils import inference

    def forward_within_memory(transport_map, x, amp):  # as if only 512 x 512 pixels fit at once
        if x.shape[-2] * x.shape[-1] > 512 * 512:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')
        return x.float(), x.mean(dim=(-2, -1))

    monkeypatch.setattr(inference, '_forward', forward_within_memory)
    write_rgb(tmp_path / 'uhd.png', np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8))
    with pytest.raises(SystemExit, match=r'uhd.png: out of memory restoring a 2160x3840 image .*--tile 512'):
        run('--ckpt', checkpoint, '--input', tmp_path / 'uhd.png', '--output', tmp_path / 'out')
    assert run('--ckpt', checkpoint, '--input', tmp_path / 'uhd.png', '--output', tmp_path / 'out',
               '--tile', 512) == 0
    assert np.array_equal(read_rgb(tmp_path / 'out' / 'restored' / 'uhd.png'), read_rgb(tmp_path / 'uhd.png'))


@pytest.mark.parametrize('flags, message', [
    (['--tile', '30'], 'multiple of 8'),
    (['--tile', '64', '--tile_overlap', '40'], '--tile_overlap'),
    (['--noise_sigma', '0'], 'positive'),
    (['--input', 'x.png'], '--output'),
    (['--dump_embeddings', '--resume'], 'without --resume'),
    (['--resume', '--overwrite'], 'not allowed with'),
])
def test_bad_flags_are_explained(checkpoint, flags, message, capsys):
    with pytest.raises(SystemExit):
        run('--ckpt', checkpoint, *flags)
    assert message in capsys.readouterr().err


def test_dump_embeddings(checkpoint, tree, tmp_path):
    out = tmp_path / 'r'
    assert run('--ckpt', checkpoint, '--test_dir', tree, '--save_dir', out, '--noise_sigma', 15, 50,
               '--dump_embeddings') == 0
    assert (out / 'embeddings' / 'embeddings_2d.png').is_file()
    assert len((out / 'embeddings' / 'embeddings_2d.csv').read_text().splitlines()) == 1 + 2 * 2 + 2 * 4 + 1


@pytest.mark.slow
def test_runs_as_a_script(checkpoint, tmp_path):
    write_rgb(tmp_path / 'photo.png', np.full((12, 20, 3), 128, np.uint8))
    result = subprocess.run([sys.executable, 'test.py', '--ckpt', str(checkpoint), '--input',
                             str(tmp_path / 'photo.png'), '--output', str(tmp_path / 'out'), '--no_progress'],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'out' / 'restored' / 'photo.png').is_file()


@pytest.mark.slow
def test_real_test_sets(tmp_path, capsys):
    """CBSD68 (sigma 25), Rain12 and the two SOTS pairs from ../shared/data, laid out by symlinks; two images
    of CBSD68 and Rain12 keep it to seconds on a CPU."""
    needed = [SHARED_DATA / 'CBSD68', SHARED_DATA / 'Rain12', SHARED_DATA / 'SOTS_outdoor_subset']
    if not all(path.is_dir() for path in needed):
        pytest.skip(f'no real test sets at {SHARED_DATA} (set DARCOT_SHARED_DATA to ../shared/data)')
    root = tmp_path / 'Test'
    links = {root / 'denoise' / 'CBSD68' / image.name: image
             for image in sorted((SHARED_DATA / 'CBSD68').glob('*.png'))[:2]}
    for image in sorted((SHARED_DATA / 'Rain12' / 'input').glob('*.png'))[:2]:
        for folder in ('input', 'target'):
            links[root / 'derain' / 'Rain12' / folder / image.name] = SHARED_DATA / 'Rain12' / folder / image.name
    for link, image in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(image)
    (root / 'dehaze').symlink_to(SHARED_DATA / 'SOTS_outdoor_subset')
    out = tmp_path / 'results'
    checkpoint = tiny_checkpoint(tmp_path / 'dim4.pth', dim=4)
    assert run('--ckpt', checkpoint, '--test_dir', root, '--save_dir', out, '--noise_sigma', 25) == 0
    records = {(r['task'], r['set']): r for r in json.loads((out / 'summary.json').read_text())}
    assert set(records) == {('denoise', 'CBSD68'), ('derain', 'Rain12'), ('dehaze', 'dehaze')}
    assert all(record['n_images'] == 2 for record in records.values())
    # sigma 25 noise is about 20 dB; rainy and hazy inputs resemble their targets but are clearly degraded.
    assert 19 < records['denoise', 'CBSD68']['input_psnr'] < 22
    assert 20 < records['derain', 'Rain12']['input_psnr'] < 40 and 10 < records['dehaze', 'dehaze']['input_psnr'] < 30
    assert read_rgb(out / 'dehaze' / 'dehaze' / 'restored' / '0001.png').shape == (413, 550, 3)
    assert 'not found: deblur' in capsys.readouterr().out
