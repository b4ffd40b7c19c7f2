"""Bad inputs: checkpoints (truncated anywhere, another model, another size, a newer version, an export given
to --resume), images (CMYK and EXIF-rotated JPEG, wrong extensions, 1x1 and one-pixel-thin images, broken
links), layouts (link loops, one name with two extensions, unicode and spaces), flags (zero, negative,
a batch larger than the data set) and Ctrl-C in test.py. See RELIABILITY.md for the table these tests back,
and for the inputs other test files already cover."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import trainer
from data.image_io import ImageReadError, list_images, read_rgb, write_rgb
from data.layouts import TEST_LAYOUT, DataLayoutError, clean_images, pair_by_name, require_complete
from data.test_sets import find_test_sets
from data.train_set import TrainDataset
from net import Restormer
from options import parse_args
from tests.fixtures import TINY, Identity, InterruptAfter, tiny_argv, tiny_checkpoint, write_test_tree, write_tiny_data
from utils.checkpoint import CheckpointError, build_map, load_checkpoint, save_checkpoint
from utils.evaluate import evaluate
from utils.official import load_any_checkpoint

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('darcot_test_script_reliability', REPO / 'test.py')
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
RGB = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def export(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp('export') / 'tiny.pth')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A one-iteration training run whose batch (16) is larger than the data set (5 samples)."""
    root = tmp_path_factory.mktemp('trained')
    data = write_tiny_data(root / 'data')
    trainer.main(tiny_argv(data, root / 'run', '--batchSize', '16', '--nEpochs', '1'))
    return data, root / 'run'


# ---------------------------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize('kept', [0.0, 0.02, 0.5, 0.98, -1])
def test_a_checkpoint_cut_anywhere_is_a_clear_error(export, tmp_path, kept, capsys):
    data = export.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:-1] if kept == -1 else data[:int(len(data) * kept)])
    with pytest.raises(CheckpointError, match=r'cut\.pth .*(empty|truncated or corrupt)'):
        load_any_checkpoint(cut)
    with pytest.raises(SystemExit, match=r'error: --ckpt: .*cut\.pth'):
        test_script.main(['--ckpt', str(cut), '--input', str(tmp_path), '--output', str(tmp_path / 'out')])


def test_weights_of_another_model_size_or_version_are_refused_with_the_reason(export, tmp_path):
    good = load_checkpoint(export)
    torch.save(good['map'], tmp_path / 'bare.pth')  # a bare state dict, as other projects save them
    with pytest.raises(CheckpointError, match='not a darcot checkpoint'):
        load_checkpoint(tmp_path / 'bare.pth')
    restormer = Restormer(**{k: v for k, v in TINY.items() if k != 'num_refinement_blocks'},
                          num_refinement_blocks=1).state_dict()
    with pytest.raises(CheckpointError, match=r'does not fit MRCNet: .*missing.*another --backbone or model size'):
        build_map({**good, 'map': restormer})
    wider = {**good, 'model': {**good['model'], 'args': {**good['model']['args'], 'dim': 16}}}
    with pytest.raises(CheckpointError, match='mis-shaped'):
        build_map(wider)
    with pytest.raises(CheckpointError, match="unknown backbone 'SwinIR'"):
        build_map({**good, 'model': {**good['model'], 'backbone': 'SwinIR'}})
    save_checkpoint({**good, 'version': 99}, tmp_path / 'newer.pth')
    with pytest.raises(CheckpointError, match='version 99.*update darcot'):
        load_checkpoint(tmp_path / 'newer.pth')


def test_resume_refuses_an_export_and_a_critic_of_another_patch_size(trained, tmp_path):
    data, run = trained
    with pytest.raises(CheckpointError, match='not a training checkpoint'):
        trainer.main(tiny_argv(data, tmp_path, '--resume', str(run / 'ckpt/last_map.pth')))
    with pytest.raises(CheckpointError, match='critic for --patch_size 32'):
        trainer.main(tiny_argv(data, tmp_path, '--patch_size', '64', '--resume', str(run / 'ckpt/last.pth')))
    with pytest.raises(CheckpointError, match='critic of --critic_width 64, not 16'):
        trainer.main(tiny_argv(data, tmp_path, '--critic_width', '16', '--resume', str(run / 'ckpt/last.pth')))
    assert not (tmp_path / 'ckpt').exists()  # nothing written by a refused resume


def test_a_batch_larger_than_the_data_set_trains_on_what_there_is(trained):
    state = load_checkpoint(trained[1] / 'ckpt/last.pth')
    assert (state['epoch'], state['step']) == (2, 1)  # one iteration, of all 5 samples, per epoch


# --------------------------------------------------------------------------------------------------- images

def test_a_cmyk_jpeg_is_read_as_rgb(tmp_path):
    Image.fromarray(RGB).convert('CMYK').save(tmp_path / 'cmyk.jpg', quality=100)
    assert Image.open(tmp_path / 'cmyk.jpg').mode == 'CMYK'
    expected = np.asarray(Image.open(tmp_path / 'cmyk.jpg').convert('RGB')).astype(int)
    assert np.abs(read_rgb(tmp_path / 'cmyk.jpg').astype(int) - expected).max() <= 2


def test_the_exif_orientation_of_a_jpeg_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(RGB).save(tmp_path / 'rotated.jpg', exif=exif, quality=100)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / 'rotated.jpg'))).astype(int)
    image = read_rgb(tmp_path / 'rotated.jpg')
    assert image.shape == (24, 16, 3) and np.abs(image.astype(int) - shown).max() <= 2  # as a viewer shows it


def test_extensions_decide_listing_content_decides_decoding(tmp_path):
    cv2.imwrite(str(tmp_path / 'really_png.jpg.png'), RGB)
    os.replace(tmp_path / 'really_png.jpg.png', tmp_path / 'really_png.jpg')
    write_rgb(tmp_path / 'photo.jpg', RGB)
    os.replace(tmp_path / 'photo.jpg', tmp_path / 'photo.txt')
    assert [p.name for p in list_images(tmp_path)] == ['really_png.jpg']
    assert np.array_equal(read_rgb(tmp_path / 'really_png.jpg'), RGB[..., ::-1])  # PNG bytes, decoded as PNG


def test_broken_links_are_listed_and_named_when_read(tmp_path):
    os.symlink(tmp_path / 'gone.png', tmp_path / 'link.png')
    assert list_images(tmp_path) == [] and list_images(tmp_path, recursive=True) == [tmp_path / 'link.png']
    with pytest.raises(ImageReadError, match=r'link\.png: cannot read'):
        read_rgb(tmp_path / 'link.png')


def test_one_pixel_and_thin_images_make_full_training_patches(tmp_path):
    for name, shape in (('dot', (1, 1)), ('row', (1, 50)), ('column', (70, 1))):
        write_rgb(tmp_path / 'Denoise' / f'{name}.png', np.full((*shape, 3), 90, np.uint8))
    dataset = TrainDataset({'denoise': str(tmp_path / 'Denoise')}, ['denoise_25'], 32, replication={'denoise_25': 1})
    for index in range(len(dataset)):
        item = dataset[index]
        assert item['lq'].shape == item['gt'].shape == (3, 32, 32)
        assert torch.allclose(item['gt'], torch.tensor(90 / 255))


def test_thin_test_images_are_restored_but_not_scored(export, tmp_path):
    write_rgb(tmp_path / 'Test/thin/input/a.png', np.full((3, 40, 3), 90, np.uint8))
    write_rgb(tmp_path / 'Test/thin/target/a.png', np.full((3, 40, 3), 100, np.uint8))
    sets, _ = find_test_sets(tmp_path / 'Test', ['thin'])
    with pytest.raises(ValueError, match=r'thin/a \(3x40\): cannot be scored .*7x7.*--input/--output'):
        evaluate(Identity(), sets, device='cpu', progress=False)
    assert test_script.main(['--ckpt', str(export), '--input', str(tmp_path / 'Test/thin/input'), '--output',
                             str(tmp_path / 'out'), '--no_progress']) == 0
    assert read_rgb(tmp_path / 'out/restored/a.png').shape == (3, 40, 3)


# -------------------------------------------------------------------------------------------------- layouts

def test_a_link_loop_lists_each_image_once(tmp_path):
    write_rgb(tmp_path / 'gt/a.png', RGB)
    write_rgb(tmp_path / 'gt/sub/b.png', RGB)
    os.symlink('..', tmp_path / 'gt/sub/up')  # gt/sub/up -> gt: followed, every image would repeat 40 times
    os.symlink(tmp_path / 'gt/sub', tmp_path / 'gt/again')  # a second way into the same folder
    assert [p.relative_to(tmp_path / 'gt').as_posix() for p in list_images(tmp_path / 'gt', recursive=True)] == [
        'a.png', 'again/b.png']


def test_one_name_with_two_extensions_is_an_error_naming_both(tmp_path):
    for name in ('x.png', 'x.jpg', 'y.png'):
        write_rgb(tmp_path / 'lq' / name, RGB)
    write_rgb(tmp_path / 'gt/x.png', RGB)
    write_rgb(tmp_path / 'gt/y.png', RGB)
    pairing = pair_by_name(tmp_path / 'lq', tmp_path / 'gt', TEST_LAYOUT)
    assert [p.name for p in pairing.pairs] == ['y']
    with pytest.raises(DataLayoutError, match=r"x\.jpg, .*x\.png share the name 'x'.*overwrite"):
        require_complete(pairing, tmp_path / 'lq', tmp_path / 'gt')
    write_rgb(tmp_path / 'clean/z.bmp', RGB)
    write_rgb(tmp_path / 'clean/z.png', RGB)
    problems = clean_images(tmp_path / 'clean', TEST_LAYOUT).problems(None, tmp_path / 'clean')
    assert len(problems) == 1 and problems[0].endswith('keep one of them')


def test_unicode_and_spaces_in_every_path(tmp_path):
    root = tmp_path / 'données d’été' / '雨 テスト'
    write_test_tree(root / 'Test')
    sets, _ = find_test_sets(root / 'Test', ['derain', 'deblur'])
    out = root / 'résultats 1'
    records = evaluate(Identity(), sets, device='cpu', save_dir=out, progress=False)
    assert [r['n_images'] for r in records] == [2, 2]
    assert len(list(out.rglob('restored/**/*.png'))) == 4
    write_rgb(root / 'photo été.png', RGB)
    assert read_rgb(root / 'photo été.png').shape == RGB.shape


# ---------------------------------------------------------------------------------------------------- flags

@pytest.mark.parametrize('argv, flag', [
    (['--patch_size', '0'], '--patch_size'), (['--patch_size', '16'], '--patch_size'),
    (['--patch_size', '-32'], '--patch_size'), (['--nEpochs', '0'], '--nEpochs'), (['--step', '0'], '--step'),
    (['--save_every', '0'], '--save_every'), (['--log_every', '-1'], '--log_every'),
    (['--max_iters', '0'], '--max_iters'), (['--max_bad_iters', '0'], '--max_bad_iters'),
    (['--threads', '-1'], '--threads'), (['--val_every', '-5'], '--val_every'), (['--val_tile', '0'], '--val_tile'),
    (['--ddp_timeout', '0'], '--ddp_timeout'), (['--num_blocks', '1', '0', '1', '1'], '--num_blocks'),
    (['--pairnum', '-1'], '--pairnum'), (['--sigma', 'inf'], '--sigma'), (['--de_type'], '--de_type'),
    (['--de_type', 'denoise_30'], '--de_type'), (['--resume', ''], '--resume'),
])
def test_zero_negative_and_unknown_training_values_name_their_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize('flags, message', [
    (['--tile', '0'], 'multiple of 8'), (['--tile', '-8'], 'multiple of 8'),
    (['--tile', '64', '--tile_overlap', '-1'], '--tile_overlap'), (['--noise_sigma', '-5'], 'positive'),
    (['--input', 'no/such/photo.png', '--output', 'out'], 'does not exist'),
])
def test_zero_negative_and_missing_test_values_are_explained(export, flags, message, capsys):
    with pytest.raises(SystemExit):
        test_script.main(['--ckpt', str(export), *flags])
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ interrupted test.py

def test_ctrl_c_in_test_py_keeps_what_was_written_and_resume_or_overwrite_finish(export, tmp_path, monkeypatch,
                                                                                  capsys):
    write_test_tree(tmp_path / 'Test')
    out = tmp_path / 'results'
    argv = ['--ckpt', str(export), '--test_dir', str(tmp_path / 'Test'), '--save_dir', str(out), '--task', 'derain',
            '--no_progress']

    def serve(network):
        monkeypatch.setattr(test_script, 'load_map', lambda path, device: (network, 'stand-in', {}))
        return network

    serve(InterruptAfter(1))
    assert test_script.main(argv) == 130
    assert 'rerun with --resume' in capsys.readouterr().err
    (done,) = (out / 'derain/Rain100L/restored').iterdir()
    assert read_rgb(done).shape == (21, 30, 3) and not list(out.rglob('.*'))  # complete files only
    assert not (out / 'summary.json').exists()
    network = serve(Identity())
    assert test_script.main([*argv, '--resume']) == 0 and len(network.calls) == 1  # only the unfinished image
    network = serve(Identity())
    assert test_script.main([*argv, '--overwrite']) == 0 and len(network.calls) == 2

    photos = ['--ckpt', str(export), '--input', str(tmp_path / 'Test/derain/Rain100L/input'), '--output',
              str(tmp_path / 'photos')]
    serve(InterruptAfter(1))
    assert test_script.main([*photos, '--no_progress']) == 130
    assert 'rerun with --resume' in capsys.readouterr().err
    network = serve(Identity())
    assert test_script.main([*photos, '--no_progress', '--resume']) == 0 and len(network.calls) == 1
