"""`data.layouts`: discovery and pairing by name for every training and test layout, and its errors.

The tree builders here are shared by the other data tests. Every clean image is random; its degraded
partner is its negative (255 - clean), so a test can tell a right pairing from a wrong one pixel by pixel.
"""

from pathlib import Path

import numpy as np
import pytest

from data.image_io import read_rgb
from data.layouts import (
    TEST_LAYOUT,
    TRAIN_LAYOUT,
    DataLayoutError,
    pair_by_name,
    scan_test_task,
    scan_train,
    train_pairs,
)
from tests.fixtures import make_test_tree, make_train_tree, write_pair


def assert_partners(pairs) -> None:
    for pair in pairs:
        assert np.array_equal(read_rgb(pair.lq), 255 - read_rgb(pair.gt)), (pair.lq, pair.gt)


def test_every_training_layout_pairs_by_name(tmp_path):
    roots = make_train_tree(tmp_path)
    denoise = train_pairs('denoise', roots['denoise'])
    assert [(p.lq, p.name) for p in denoise] == [(None, 'WED/b'), (None, 'a')]
    derain = train_pairs('derain', roots['derain'])
    assert sorted(p.name for p in derain) == ['rain-1', 'rain-10', 'rain-2']
    dehaze = train_pairs('dehaze', roots['dehaze'])  # partK subfolders, several hazy images per clean one
    assert sorted((p.name, p.gt.name) for p in dehaze) == [
        ('part1/0001_0.8_0.2', '0001.png'), ('part2/0001_1_0.16', '0001.png'), ('part2/0002_0.9_0.1', '0002.png')]
    deblur = train_pairs('deblur', roots['deblur'])  # the same file name in two sequences
    assert sorted(p.gt.relative_to(roots['deblur']).as_posix() for p in deblur) == [
        'sharp/GOPR0372_07_00/000047.png', 'sharp/GOPR0374_11_00/000047.png']
    lowlight, single = train_pairs('lowlight', roots['lowlight']), train_pairs('single', roots['single'])
    for pairs in (derain, dehaze, deblur, lowlight, single):
        assert_partners(pairs)


def test_pairing_is_by_name_not_by_sorted_order(tmp_path):
    for name, seed in (('b', 1), ('c', 2)):
        write_pair(tmp_path / f'lq/{name}.png', tmp_path / f'gt/{name}.png', seed)
    write_pair(None, tmp_path / 'gt/a.png', 3)  # sorted orders now disagree
    pairing = pair_by_name(tmp_path / 'lq', tmp_path / 'gt', TEST_LAYOUT)
    assert_partners(pairing.pairs)
    assert [p.name for p in pairing.unmatched_gt] == ['a.png'] and not pairing.unmatched_lq


def test_same_stem_with_another_extension_pairs(tmp_path):
    write_pair(tmp_path / 'lq/0001_0.8_0.2.jpg', tmp_path / 'gt/0001.png', 4)  # SOTS: JPEG input, PNG target
    write_pair(tmp_path / 'lq/x.jpg', tmp_path / 'gt/x.png', 5)
    pairing = pair_by_name(tmp_path / 'lq', tmp_path / 'gt', TEST_LAYOUT)
    assert sorted((p.lq.name, p.gt.name) for p in pairing.pairs) == [('0001_0.8_0.2.jpg', '0001.png'),
                                                                     ('x.jpg', 'x.png')]


def test_unmatched_files_are_an_error_listing_them(tmp_path):
    root = make_train_tree(tmp_path)['derain']
    write_pair(root / 'rainy/rain-7.png', root / 'gt/norain-8.png', 9)
    with pytest.raises(DataLayoutError, match=r'1 degraded file\(s\) in .*rainy have no clean partner in .*gt: '
                                              r'.*rain-7\.png(.|\n)*1 clean file\(s\) .*norain-8\.png'):
        train_pairs('derain', root)
    pairing = scan_train('derain', root)  # the report behind the error
    assert [p.name for p in pairing.unmatched_lq] == ['rain-7.png']
    assert [p.name for p in pairing.unmatched_gt] == ['norain-8.png']


def test_unused_clean_images_are_allowed_for_ots_only(tmp_path):
    roots = make_train_tree(tmp_path)
    write_pair(None, roots['dehaze'] / 'original/0003.png', 7)  # its hazy versions are in a part not downloaded
    assert len(train_pairs('dehaze', roots['dehaze'])) == 3
    write_pair(None, roots['lowlight'] / 'high/3.png', 8)
    with pytest.raises(DataLayoutError, match=r'clean file\(s\) .* no degraded partner.*high.3\.png'):
        train_pairs('lowlight', roots['lowlight'])


def test_ambiguous_partners_are_an_error(tmp_path):
    write_pair(tmp_path / 'lq/a.bmp', tmp_path / 'gt/a.png', 1)
    write_pair(None, tmp_path / 'gt/a.jpg', 2)
    pairing = pair_by_name(tmp_path / 'lq', tmp_path / 'gt', TEST_LAYOUT)
    assert not pairing.pairs and 'a.bmp could pair with several clean files' in pairing.problems(None, Path())[0]


def test_missing_or_empty_folders_name_it_and_show_the_layout(tmp_path):
    with pytest.raises(DataLayoutError, match=r'Derain.rainy does not exist; expected this layout:\n.*Denoise/'):
        train_pairs('derain', tmp_path / 'Derain')
    (tmp_path / 'Denoise').mkdir()
    (tmp_path / 'Denoise/readme.txt').write_text('images go here')
    with pytest.raises(DataLayoutError, match=r'Denoise holds no image; expected this layout'):
        train_pairs('denoise', tmp_path / 'Denoise')
    assert 'Deblur/blur/<sequence>' in TRAIN_LAYOUT and 'lowlight/{low,high}' in TEST_LAYOUT


def test_test_layouts_are_discovered(tmp_path):
    root = make_test_tree(tmp_path)
    found = {task: scan_test_task(root, task) for task in ('denoise', 'derain', 'dehaze', 'deblur', 'lowlight',
                                                            'mixed', 'absent')}
    assert [(s.name, s.lq_dir, len(s.pairing.pairs)) for s in found['denoise']] == [('bsd68', None, 1),
                                                                                    ('kodak24', None, 1)]
    assert [(s.name, len(s.pairing.pairs)) for s in found['derain']] == [('Rain100L', 2)]
    assert [s.name for s in found['dehaze']] == ['dehaze'] and found['dehaze'][0].pairing.pairs[0].gt.name == '0001.png'
    assert found['lowlight'][0].lq_dir.name == 'low' and found['mixed'][0].name == 'mixed'
    assert found['absent'] == []
    for task in ('derain', 'dehaze', 'deblur', 'lowlight', 'mixed'):
        assert_partners(found[task][0].pairing.pairs)


def test_a_task_folder_without_a_test_layout_is_an_error(tmp_path):
    write_pair(None, tmp_path / 'deblur/blurred/a.png', 1)
    with pytest.raises(DataLayoutError, match=r'(?s)deblur holds no test set; expected this layout:\n.*dehaze/'):
        scan_test_task(tmp_path, 'deblur')
