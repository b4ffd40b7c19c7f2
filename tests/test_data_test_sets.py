"""`data.test_sets`: discovery of every test layout, full-size items, the noise protocol and the errors."""

import numpy as np
import pytest
import torch

from data import noise
from data.image_io import read_rgb, write_rgb
from data.layouts import DataLayoutError
from data.noise import OfficialNoise
from data.test_sets import (
    TEST_TASKS,
    TestSet,
    find_test_sets,
    trim_first_row_and_column,
    trim_to_multiple,
)
from tests.fixtures import make_test_tree, write_pair


@pytest.fixture
def test_root(tmp_path):
    return make_test_tree(tmp_path / 'Test')


def test_every_task_is_found(test_root):
    sets, missing = find_test_sets(test_root, TEST_TASKS)
    assert missing == []
    found = [(s.task, s.name, s.sigma, len(s)) for s in sets]
    assert found == [
        ('denoise', 'bsd68', 15, 1), ('denoise', 'bsd68', 25, 1), ('denoise', 'bsd68', 50, 1),
        ('denoise', 'kodak24', 15, 1), ('denoise', 'kodak24', 25, 1), ('denoise', 'kodak24', 50, 1),
        ('derain', 'Rain100L', None, 2), ('dehaze', 'dehaze', None, 1), ('deblur', 'deblur', None, 1),
        ('lowlight', 'lowlight', None, 1)]


def test_no_tasks_means_every_folder_including_mixed(test_root):
    sets, _ = find_test_sets(test_root, sigmas=(25.0, 10))
    mixed = sets[-1]
    assert (mixed.task, mixed.name) == ('mixed', 'mixed')
    assert [s.sigma for s in sets if s.name == 'bsd68'] == [25.0, 10]


def test_items_are_full_size_and_paired_by_name(test_root):
    sets, _ = find_test_sets(test_root, ['derain', 'deblur'])
    for test_set in sets:
        for index in range(len(test_set)):
            item = test_set[index]
            assert set(item) == {'lq', 'gt', 'task', 'name'} and item['task'] == test_set.task
            assert item['lq'].shape == item['gt'].shape == (3, 20, 24) and item['lq'].dtype == torch.float32
            torch.testing.assert_close(item['lq'], 1 - item['gt'], rtol=0, atol=1e-6)
    assert [sets[0][i]['name'] for i in range(2)] == ['rain-001', 'rain-002']


def test_denoise_sets_use_the_test_noise_protocol(test_root):
    sets, _ = find_test_sets(test_root, ['denoise'], sigmas=(25,))
    lq, gt = sets[1].images(0)
    assert gt.shape == (18, 26, 3)  # kodak24's image, not cropped
    assert np.array_equal(gt, read_rgb(test_root / 'denoise/kodak24/kodim01.png'))
    assert np.array_equal(lq, noise.test_noise(gt, 25))
    item = sets[1][0]
    assert item['name'] == 'kodim01' and torch.equal(item['lq'], torch.from_numpy(lq).permute(2, 0, 1) / 255)


def test_missing_tasks_are_reported_not_raised(test_root):
    sets, missing = find_test_sets(test_root, ['derain', 'snow'])
    assert [s.task for s in sets] == ['derain']
    assert len(missing) == 1 and missing[0].startswith('snow: no test set at') and 'snow/{input,target}' in missing[0]
    (test_root / 'deblur/input/GOPR0384_11_00-000001.png').unlink()
    (test_root / 'deblur/target/GOPR0384_11_00-000001.png').unlink()
    assert find_test_sets(test_root, ['deblur'])[1][0].startswith('deblur: no test set at')


def test_a_missing_or_empty_root_is_an_error_showing_the_layout(tmp_path):
    with pytest.raises(DataLayoutError, match=r'(?s)test root .*nowhere does not exist; expected .*lowlight/\{low'):
        find_test_sets(tmp_path / 'nowhere', TEST_TASKS)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataLayoutError, match=r'test root .*empty is empty'):
        find_test_sets(tmp_path / 'empty', TEST_TASKS)


def test_unmatched_files_are_an_error_listing_them(test_root):
    write_pair(test_root / 'dehaze/input/0002_0.9_0.1.png', test_root / 'dehaze/target/0003.png', 5)
    with pytest.raises(DataLayoutError, match=r'(?s)0002_0\.9_0\.1\.png.*0003\.png.*rename or remove'):
        find_test_sets(test_root, ['dehaze'])


def test_pairs_of_different_sizes_are_an_error(test_root):
    write_rgb(test_root / 'lowlight/low/1.png', np.zeros((4, 4, 3), np.uint8))
    sets, _ = find_test_sets(test_root, ['lowlight'])
    with pytest.raises(DataLayoutError, match=r'1\.png \(4, 4\) and .*1\.png \(20, 24\) differ in size'):
        sets[0][0]


def test_a_sigma_is_needed_for_denoise_only():
    with pytest.raises(ValueError, match='sigma is needed for, and only for, the denoise task'):
        TestSet('denoise', 'bsd68', [])
    with pytest.raises(ValueError, match='sigma'):
        TestSet('derain', 'Rain100L', [], sigma=15)


def test_official_trims():
    image = np.arange(21 * 30 * 3).reshape(21, 30, 3)
    assert np.array_equal(trim_to_multiple(image), image[:16, :24])  # bottom rows and right columns go
    assert trim_to_multiple(image[:16, :24]).shape == (16, 24, 3)
    with pytest.raises(ValueError, match='--protocol pad'):
        trim_to_multiple(image[:7])
    bsd = np.zeros((481, 321, 3))
    assert trim_first_row_and_column(bsd).shape == (480, 320, 3)
    assert trim_first_row_and_column(bsd[:480]).shape == (479, 320, 3)  # one side off: both the row and column go
    assert trim_first_row_and_column(bsd[:480, :320]).shape == (480, 320, 3)
    assert np.array_equal(trim_first_row_and_column(image), image[1:, 1:])


def test_official_noise_is_one_seed_1850_stream_in_image_order(tmp_path):
    rng = np.random.default_rng(3)
    cleans = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((9, 7, 3), (5, 12, 3), (8, 8, 3))]
    for index, clean in enumerate(cleans):
        write_rgb(tmp_path / f'{index}.png', clean)
    np.random.seed(1850)  # the official tester, literally
    expected = [np.clip(clean + 25 * np.random.randn(*clean.shape), 0, 255).astype(np.uint8) for clean in cleans]
    for order in ([0, 1, 2], [2, 0, 1], [1, 1, 0, 2, 2]):
        stream = OfficialNoise([tmp_path / f'{index}.png' for index in range(3)], 25)
        for index in order:
            assert np.array_equal(stream.noisy(index, cleans[index]), expected[index])


def test_the_official_protocol_serves_trimmed_streamed_denoise_images(test_root):
    pad = find_test_sets(test_root, ['denoise'], sigmas=(25,))[0][1]  # kodak24
    official = find_test_sets(test_root, ['denoise'], sigmas=(25,), protocol='official')[0][1]
    lq, gt = official.images(0)
    clean = read_rgb(test_root / 'denoise/kodak24/kodim01.png')  # 18 x 26: 26 is not a multiple of 4
    assert np.array_equal(gt, clean[1:, 1:])
    assert np.array_equal(lq, OfficialNoise([official.pairs[0].gt], 25).noisy(0, clean)[1:, 1:])
    assert np.array_equal(pad.images(0)[1], clean)  # pad: full size
    (rain,), _ = find_test_sets(test_root, ['derain'], protocol='official')
    lq, gt = rain.images(0)
    assert lq.shape == gt.shape == (16, 24, 3)
