"""evaluate(): pairing and metrics on tiny sets of every task, the two size protocols, saved outputs equal to
what was scored, interrupted and resumed runs, optional metrics, memory errors, embeddings."""

import csv

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from data import noise
from data.image_io import read_rgb
from data.test_sets import find_test_sets
from tests.fixtures import Identity, InterruptAfter, tiny_map, write_test_tree
from utils.evaluate import RESIDUAL_GAIN, evaluate, restore_images
from utils.inference import InferenceMemoryError
from utils.metrics import FID, LPIPS, Unavailable

KEYS = {'task', 'set', 'sigma', 'protocol', 'y_channel', 'n_images', 'psnr', 'ssim', 'lpips', 'lpips_inputs', 'fid',
        'input_psnr', 'input_ssim', 'offset', 'input_offset', 'seconds_per_image', 'not_computed'}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / 'Test'
    return root, write_test_tree(root)


def read_csv(path):
    with open(path, newline='') as handle:
        return list(csv.DictReader(handle))


def test_every_task_is_paired_and_scored(tree, tmp_path):
    root, pairs = tree
    sets, missing = find_test_sets(root, sigmas=(15, 50))
    assert missing == []
    records = evaluate(Identity(), sets, device='cpu', save_dir=tmp_path / 'out', progress=False)
    assert [(r['task'], r['set'], r['sigma']) for r in records] == [
        ('denoise', 'bsd68', 15), ('denoise', 'bsd68', 50), ('derain', 'Rain100L', None), ('dehaze', 'dehaze', None),
        ('deblur', 'deblur', None), ('lowlight', 'lowlight', None), ('mixed', 'mixed', None)]
    for record in records:
        assert set(record) == KEYS
        assert record['protocol'] == 'pad' and record['n_images'] == len(pairs[record['task']])
        # The identity map restores nothing, so restored and input scores agree; both are recomputed here
        # from the files, which shows each degraded file met its own target.
        assert record['psnr'] == pytest.approx(record['input_psnr']) and record['ssim'] == record['input_ssim']
        assert record['offset'] == record['input_offset']
        expected, offsets = [], []
        for lq_path, gt_path in pairs[record['task']]:
            gt = read_rgb(gt_path)
            lq = noise.test_noise(gt, record['sigma']) if lq_path is None else read_rgb(lq_path)
            expected.append((peak_signal_noise_ratio(gt, lq, data_range=255),
                             structural_similarity(gt, lq, channel_axis=2, data_range=255)))
            offsets.append(lq.astype(np.int64).sum() / lq.size - gt.astype(np.int64).sum() / gt.size)
        assert record['input_psnr'] == pytest.approx(np.mean([p for p, _ in expected]), rel=1e-12)
        assert record['input_ssim'] == pytest.approx(np.mean([s for _, s in expected]), rel=1e-12)
        # Integer sums of these small 8-bit images are exact in float64: both sides are the same rounded quotients.
        assert record['input_offset'] == pytest.approx(np.mean(offsets), rel=1e-12, abs=1e-12)
        assert record['lpips'] is None and record['not_computed'] == {'lpips': 'not requested', 'fid': 'not requested'}
    rows = read_csv(tmp_path / 'out' / 'deblur' / 'deblur' / 'metrics.csv')
    assert [row['name'] for row in rows] == ['GOPR0384_11_00/000001', 'GOPR0410_11_00/000001']
    assert (tmp_path / 'out' / 'deblur' / 'deblur' / 'restored' / 'GOPR0410_11_00' / '000001.png').is_file()


@pytest.mark.parametrize('protocol, size', [('pad', (21, 30)), ('official', (16, 24))])
def test_protocols_feed_and_score_the_right_size(tree, tmp_path, protocol, size):
    root, _ = tree
    sets, _ = find_test_sets(root, ['mixed'], protocol=protocol)
    network = Identity()
    evaluate(network, sets, device='cpu', save_dir=tmp_path, progress=False)
    assert network.calls == [(1, 3, *size)]
    row = read_csv(tmp_path / 'mixed' / 'mixed' / 'metrics.csv')[0]
    assert (int(row['height']), int(row['width'])) == size and row['protocol'] == protocol
    assert read_rgb(tmp_path / 'mixed' / 'mixed' / 'restored' / 'a.png').shape == (*size, 3)
    # The official trim keeps the top-left corner of both images.
    assert np.array_equal(read_rgb(tmp_path / 'mixed' / 'mixed' / 'restored' / 'a.png'),
                          read_rgb(root / 'mixed' / 'input' / 'a.png')[:size[0], :size[1]])


def test_saved_outputs_are_exactly_what_was_scored(tree, tmp_path):
    root, _ = tree
    sets, _ = find_test_sets(root, ['derain'])
    records = evaluate(tiny_map(), sets, device='cpu', save_dir=tmp_path, compare=True, progress=False,
                       y_channel=True)
    folder = tmp_path / 'derain' / 'Rain100L'
    rows = read_csv(folder / 'metrics.csv')
    for row in rows:
        restored = read_rgb(folder / 'restored' / f'{row["name"]}.png')
        target = read_rgb(root / 'derain' / 'Rain100L' / 'target' / f'no{row["name"]}.png')
        degraded = read_rgb(root / 'derain' / 'Rain100L' / 'input' / f'{row["name"]}.png')
        y = [image.astype(np.float64) @ (np.array([65.481, 128.553, 24.966]) / 255) + 16
             for image in (restored, target)]
        assert float(row['psnr']) == pytest.approx(peak_signal_noise_ratio(y[1], y[0], data_range=255), rel=1e-12)
        assert float(row['offset']) == pytest.approx(restored.mean() - target.mean(), rel=1e-12, abs=1e-12)
        assert float(row['input_offset']) == pytest.approx(degraded.mean() - target.mean(), rel=1e-12, abs=1e-12)
        residual = read_rgb(folder / 'residual' / f'{row["name"]}.png')
        expected = np.clip(np.abs(degraded.astype(int) - restored) * RESIDUAL_GAIN, 0, 255)
        assert np.array_equal(residual, expected)
        strip = read_rgb(folder / 'compare' / f'{row["name"]}.png')
        assert strip.shape == (21, 4 * 30 + 3 * 4, 3)
        assert np.array_equal(strip[:, -30:], target)
    assert records[0]['y_channel'] is True
    assert records[0]['psnr'] == pytest.approx(np.mean([float(row['psnr']) for row in rows]))
    assert not list(tmp_path.rglob('.*'))  # no partial files left behind


def test_an_interrupted_run_resumes_where_it_stopped(tree, tmp_path):
    root, _ = tree
    sets, _ = find_test_sets(root, ['denoise', 'derain'], sigmas=(25,))
    reference = evaluate(Identity(), sets, device='cpu', progress=False)
    with pytest.raises(KeyboardInterrupt):
        evaluate(InterruptAfter(3), sets, device='cpu', save_dir=tmp_path, progress=False)
    assert len(read_csv(tmp_path / 'denoise' / 'bsd68_sigma25' / 'metrics.csv')) == 2
    assert len(read_csv(tmp_path / 'derain' / 'Rain100L' / 'metrics.csv')) == 1
    assert not list(tmp_path.rglob('.*'))
    # A row cut short by the interruption is dropped and its image restored again.
    with open(tmp_path / 'derain' / 'Rain100L' / 'metrics.csv', 'a') as handle:
        handle.write('rain-2,21,30,pad,Fal')
    network = Identity()
    resumed = evaluate(network, sets, device='cpu', save_dir=tmp_path, resume=True, progress=False)
    assert len(network.calls) == 1
    for got, expected in zip(resumed, reference, strict=True):
        # CSV values are written with repr(), so the resumed means are exact.
        assert {k: v for k, v in got.items() if k != 'seconds_per_image'} == \
            {k: v for k, v in expected.items() if k != 'seconds_per_image'}
    assert [row['name'] for row in read_csv(tmp_path / 'derain' / 'Rain100L' / 'metrics.csv')] == ['rain-1', 'rain-2']


def test_resume_redoes_images_made_with_other_settings_or_deleted(tree, tmp_path):
    root, _ = tree
    sets, _ = find_test_sets(root, ['lowlight'])
    evaluate(Identity(), sets, device='cpu', save_dir=tmp_path, progress=False)
    sets, _ = find_test_sets(root, ['lowlight'], protocol='official')
    network = Identity()
    evaluate(network, sets, device='cpu', save_dir=tmp_path, resume=True, progress=False)
    assert len(network.calls) == 2
    (tmp_path / 'lowlight' / 'lowlight' / 'restored' / '22.png').unlink()
    network = Identity()
    evaluate(network, sets, device='cpu', save_dir=tmp_path, resume=True, progress=False)
    assert len(network.calls) == 1
    network = Identity()
    evaluate(network, sets, device='cpu', save_dir=tmp_path, resume=False, progress=False)
    assert len(network.calls) == 2  # without resume everything is redone
    # A CSV from before the offset columns: its rows lack a value, so their images are restored again.
    path = tmp_path / 'lowlight' / 'lowlight' / 'metrics.csv'
    rows = read_csv(path)
    with open(path, 'w', newline='') as handle:
        fields = [key for key in rows[0] if key not in ('offset', 'input_offset')]
        writer = csv.DictWriter(handle, fields, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    network = Identity()
    evaluate(network, sets, device='cpu', save_dir=tmp_path, resume=True, progress=False)
    assert len(network.calls) == 2 and all(row['offset'] for row in read_csv(path))


def test_optional_metrics_with_stand_ins_and_their_reasons(tree):
    root, _ = tree
    sets, _ = find_test_sets(root, ['dehaze', 'mixed'])
    lpips = LPIPS(lambda x, y: (x - y).abs().mean(dim=(1, 2, 3)))
    fid = FID(lambda batch: batch.mean(dim=(2, 3)))
    dehaze, mixed = evaluate(Identity(), sets, device='cpu', lpips=lpips, fid=fid, progress=False)
    expected = np.mean([np.abs(read_rgb(lq).astype(float) - read_rgb(gt)).mean() / 127.5
                        for lq, gt in zip(sorted((root / 'dehaze' / 'input').iterdir()),
                                          sorted((root / 'dehaze' / 'target').iterdir()), strict=True)])
    assert dehaze['lpips'] == pytest.approx(expected, rel=1e-5)
    assert dehaze['fid'] is not None and dehaze['fid'] >= -1e-4 and dehaze['not_computed'] == {}
    assert mixed['fid'] is None and 'at least 2 images' in mixed['not_computed']['fid']
    (record,) = evaluate(Identity(), sets[:1], device='cpu', lpips=Unavailable('no weights here'), progress=False)
    assert record['lpips'] is None and record['not_computed']['lpips'] == 'no weights here'


def test_memory_errors_name_the_image(tree):
    root, _ = tree

    class OutOfMemory(nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError('CUDA out of memory')

    sets, _ = find_test_sets(root, ['mixed'])
    with pytest.raises(InferenceMemoryError, match=r'mixed/mixed/a: out of memory .*--tile'):
        evaluate(OutOfMemory(), sets, device='cpu', progress=False)


def test_mode_is_restored_and_embeddings_are_collected(tree):
    root, _ = tree
    sets, _ = find_test_sets(root, ['derain', 'mixed'])
    network = tiny_map().train()
    rows = []
    evaluate(network, sets, device='cpu', embeddings=rows, progress=False)
    assert network.training
    assert [(row['task'], row['name']) for row in rows] == [('derain', 'rain-1'), ('derain', 'rain-2'),
                                                            ('mixed', 'a')]
    assert rows[0]['embedding'].shape == (64,)
    with pytest.raises(ValueError, match='--resume'):
        evaluate(network, sets, device='cpu', embeddings=[], resume=True)


def test_unsafe_image_names_are_refused(tmp_path):
    class Escaping:
        task, name, sigma, protocol = 'mixed', 'x', None, 'pad'

        def __len__(self):
            return 1

        def __getitem__(self, index):
            return {'lq': torch.zeros(3, 8, 8), 'gt': torch.zeros(3, 8, 8), 'task': 'mixed', 'name': '../../evil'}

    with pytest.raises(ValueError, match='outside the output folder'):
        evaluate(Identity(), [Escaping()], device='cpu', save_dir=tmp_path / 'out', progress=False)
    assert not (tmp_path / 'evil.png').exists()


def test_restore_images_keeps_sizes_and_reports_unreadable_files(tmp_path):
    from data.image_io import write_rgb

    write_rgb(tmp_path / 'in' / 'odd.png', np.full((13, 17, 3), 90, np.uint8))
    (tmp_path / 'in' / 'broken.png').write_bytes(b'not a png')
    sources = [('odd', tmp_path / 'in' / 'odd.png'), ('broken', tmp_path / 'in' / 'broken.png')]
    written, failed = restore_images(tiny_map(), sources, tmp_path / 'out', device='cpu', progress=False)
    assert written == ['odd'] and len(failed) == 1 and 'broken.png' in failed[0]
    assert read_rgb(tmp_path / 'out' / 'restored' / 'odd.png').shape == (13, 17, 3)
    assert read_rgb(tmp_path / 'out' / 'residual' / 'odd.png').shape == (13, 17, 3)
    written, _ = restore_images(tiny_map(), sources[:1], tmp_path / 'out', device='cpu', resume=True,
                                progress=False)
    assert written == []
