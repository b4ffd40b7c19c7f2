"""`data.demo`: the built-in demo set has the real layouts, the benchmarks' input PSNR, held-out test photographs,
and is deterministic."""

import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest

from data import demo
from data.check import run_check
from data.layouts import default_train_roots
from data.tasks import DE_TYPES
from data.test_sets import find_test_sets
from data.train_set import CleanPatchSource, TrainDataset


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo') / 'demo'
    return root, demo.build_demo(root, seed=0)


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_input_psnr_matches_the_real_benchmarks(built):
    _, psnr = built
    assert set(psnr) == {'denoise_15', 'denoise_25', 'denoise_50', 'derain', 'dehaze', 'deblur', 'lowlight', 'mixed'}
    for key, (low, high, _) in demo.PSNR_TARGETS.items():
        assert low <= psnr[key] <= high, (key, psnr[key])
    assert psnr['denoise_15'] > psnr['denoise_25'] > psnr['denoise_50']
    report = demo.report(psnr)
    assert 'derain' in report and 'target 26-29 dB (Rain100L)' in report


def test_the_test_tree_loads_through_the_test_set_code(built):
    root, _ = built
    sets, missing = find_test_sets(root / 'Test')
    assert missing == []
    assert sorted({(s.task, s.name) for s in sets}) == [
        ('deblur', 'deblur'), ('dehaze', 'dehaze'), ('denoise', 'demo'), ('derain', 'demo'),
        ('lowlight', 'lowlight'), ('mixed', 'mixed')]
    for test_set in sets:
        assert len(test_set) == 4 and test_set[0]['lq'].shape == (3, 256, 256)


def test_the_train_tree_loads_through_the_training_set_code(built):
    root, _ = built
    roots = default_train_roots(root / 'Train')
    data = TrainDataset(roots, list(DE_TYPES), 32, replication=dict.fromkeys(DE_TYPES, 1))
    assert {s.token: len(s.pairs) for s in data.sources} == {
        'denoise_15': 8, 'denoise_25': 8, 'denoise_50': 8, 'derain': 16, 'dehaze': 16, 'deblur': 8 * demo.BLUR_VARIANTS,
        'lowlight': 16, 'single': 8}
    assert {data[i]['task'] for i in range(len(data))} == set(DE_TYPES.values())
    assert len(CleanPatchSource(roots, ['dehaze'], 32).clean['dehaze']) == 8  # one clean image per 2 hazy
    text, ok = run_check(root / 'Train', root / 'Test', data_lists='none')  # as --preset demo trains
    assert ok and text.count(': yes') == 4


def test_test_photographs_are_held_out_of_training():
    train, test = demo.photos()
    assert len({p.name for p in train + test}) == len(train) + len(test)
    for photo in test:
        block = np.ascontiguousarray(photo.image[120:136, 120:136]).astype(np.float32)
        for other in train:
            match = cv2.matchTemplate(other.image.astype(np.float32), block, cv2.TM_SQDIFF)
            assert match.min() > 0, (photo.name, other.name)


@pytest.mark.slow
def test_a_stale_demo_is_rebuilt_identically_and_a_fresh_one_kept(built, tmp_path):
    root, psnr = built
    copy = tmp_path / 'demo'
    shutil.copytree(root, copy)
    manifest = copy / demo.MANIFEST
    stamp = manifest.stat().st_mtime_ns
    assert demo.ensure_demo(copy) == (copy / 'Train', copy / 'Test')
    assert manifest.stat().st_mtime_ns == stamp  # up to date: kept
    assert demo.build_demo(copy) == psnr
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), 'version': 0}))
    (copy / 'Train/Denoise/camera.png').unlink()
    demo.ensure_demo(copy)  # an older version: rebuilt, identical to a fresh build with the same seed
    assert _digests(copy) == _digests(root)


def test_an_existing_folder_is_not_overwritten_without_force(tmp_path):
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine/photo.png').write_bytes(b'x')
    with pytest.raises(FileExistsError, match='pass --force'):
        demo.build_demo(tmp_path / 'mine')
    assert (tmp_path / 'mine/photo.png').read_bytes() == b'x'


def test_the_command_prints_the_figures_of_an_existing_demo(built, capsys):
    root, psnr = built
    demo.main(['--root', str(root)])
    out = capsys.readouterr().out
    assert f'{psnr["lowlight"]:6.2f} dB  target 7-10 dB (LOL)' in out and str(root / 'Train') in out


@pytest.mark.slow
def test_the_command_rebuilds_an_older_demo_and_refuses_other_folders(built, tmp_path, capsys):
    root, _ = built
    copy = tmp_path / 'demo'
    shutil.copytree(root, copy)
    manifest = copy / demo.MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), 'version': demo.DEMO_VERSION - 1}))
    demo.main(['--root', str(copy)])
    assert f'rebuilding it as version {demo.DEMO_VERSION}' in capsys.readouterr().out
    assert json.loads(manifest.read_text())['version'] == demo.DEMO_VERSION
    assert _digests(copy) == _digests(root)
    (tmp_path / 'mine').mkdir()
    with pytest.raises(SystemExit):  # not a demo set: an error naming the folder and --force, no traceback
        demo.main(['--root', str(tmp_path / 'mine')])
    assert 'pass --force' in capsys.readouterr().err
