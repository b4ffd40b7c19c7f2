"""The real benchmark sets of `../shared/data` (override with DARCOT_SHARED_DATA) loaded through the test-set
code, laid out as `data.layouts.TEST_LAYOUT` says with a temporary tree of links. Skipped where absent."""

import hashlib

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from data.check import check_test
from data.layouts import shared_data
from data.test_sets import find_test_sets
from tests.golden import golden_file

SHARED = shared_data()
NEEDED = ('CBSD68', 'Rain12', 'Rain100H', 'SOTS_outdoor_subset')
pytestmark = pytest.mark.skipif(not all((SHARED / name).is_dir() for name in NEEDED),
                                reason=f'the real test sets {NEEDED} are not in {SHARED} (set DARCOT_SHARED_DATA)')


@pytest.fixture(scope='module')
def test_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('shared') / 'Test'
    links = {'denoise/bsd68': 'CBSD68', 'derain/Rain12': 'Rain12', 'derain/Rain100H': 'Rain100H',
             'dehaze/input': 'SOTS_outdoor_subset/input', 'dehaze/target': 'SOTS_outdoor_subset/target'}
    for link, target in links.items():
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        (root / link).symlink_to(SHARED / target, target_is_directory=True)
    return root


def test_the_real_sets_are_found_and_paired(test_root):
    sets, missing = find_test_sets(test_root, ['denoise', 'derain', 'dehaze', 'deblur'], sigmas=(25,))
    assert [(s.task, s.name, s.sigma, len(s)) for s in sets] == [
        ('denoise', 'bsd68', 25, 68), ('derain', 'Rain100H', None, 100), ('derain', 'Rain12', None, 12),
        ('dehaze', 'dehaze', None, 2)]
    assert len(missing) == 1 and missing[0].startswith('deblur:')
    for test_set in sets[1:]:
        assert all(p.lq.name == p.gt.name for p in test_set.pairs)


def test_real_images_load_full_size_with_the_known_input_psnr(test_root):
    sets, _ = find_test_sets(test_root, ['denoise', 'derain', 'dehaze'], sigmas=(25,))
    assert len(sets) == 4
    sizes = {'bsd68': {(321, 481), (481, 321)}, 'Rain100H': {(320, 480), (480, 320)}, 'Rain12': {(320, 480)},
             'dehaze': {(413, 550)}}
    # mean input PSNR (RGB) of each whole set: sigma-25 noise ~20.5 dB, heavy rain ~12 dB, Rain12 ~29 dB
    psnr_range = {'bsd68': (20.2, 20.9), 'Rain100H': (11.0, 13.5), 'Rain12': (27.5, 30.0), 'dehaze': (16.0, 20.0)}
    for test_set in sets:
        item = test_set[len(test_set) - 1]
        assert tuple(item['lq'].shape[1:]) in sizes[test_set.name] and item['gt'].shape == item['lq'].shape
        psnr = [peak_signal_noise_ratio(gt, lq, data_range=255)
                for lq, gt in map(test_set.images, range(len(test_set)))]
        low, high = psnr_range[test_set.name]
        assert low < np.mean(psnr) < high, (test_set.name, np.mean(psnr))


def test_the_checker_reports_the_real_sets(test_root):
    reports = {r.label.split()[-1]: r for r in check_test(test_root, decode=False)}
    assert reports[str(test_root / 'derain/Rain100H')].summary == '100 pairs'
    assert reports[str(test_root / 'denoise/bsd68')].summary == '68 clean images'
    assert all(not r.problems for r in reports.values())


def test_the_official_denoise_protocol_feeds_the_official_testers_noisy_images(test_root):
    """`--protocol official` on CBSD68 at sigma 25 gives, image by image, the exact uint8 arrays the official
    `tester_noise.py` feeds its network (sha256 of each trimmed array, from the official code)."""
    golden = np.load(golden_file('official_noise_cbsd68_sigma25.npz'))
    sets, _ = find_test_sets(test_root, ['denoise'], sigmas=(25,), protocol='official')
    (bsd68,) = sets
    assert [pair.gt.name for pair in bsd68.pairs] == list(golden['names'])
    first, _ = bsd68.images(0)
    assert np.array_equal(first, golden['noisy_25_0'])
    for index in reversed(range(len(bsd68))):  # any order (a resumed run) draws the same stream
        noisy, clean = bsd68.images(index)
        assert noisy.shape == clean.shape and noisy.shape[0] % 4 == 0 == noisy.shape[1] % 4
        assert hashlib.sha256(noisy.tobytes()).hexdigest() == golden['sha256_25'][index], bsd68.pairs[index].gt
