"""`data.train_set`: replication, aligned crops, noise on the fly, determinism (also across DataLoader workers),
the clean-patch source and every bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.image_io import ImageReadError, write_rgb
from data.layouts import DataLayoutError, Pair, default_train_roots
from data.tasks import DE_TYPES, THREE_TASK
from data.train_set import CleanPatchSource, TrainDataset, dihedral, hold_out, random_crop
from tests.fixtures import make_train_tree, write_pair

ALL = ['denoise_15', 'denoise_25', 'denoise_50', 'derain', 'dehaze', 'deblur', 'lowlight', 'single']


@pytest.fixture
def roots(tmp_path):
    return make_train_tree(tmp_path / 'Train')


def test_length_is_the_replicated_concatenation(roots):
    data = TrainDataset(roots, ALL, 8)
    sizes = {s.token: (len(s.pairs), s.replication) for s in data.sources}
    assert sizes == {'denoise_15': (2, 5), 'denoise_25': (2, 5), 'denoise_50': (2, 5), 'derain': (3, 360),
                     'dehaze': (3, 1), 'deblur': (2, 35), 'lowlight': (1, 150), 'single': (1, 5)}
    assert len(data) == 3 * 2 * 5 + 3 * 360 + 3 + 2 * 35 + 150 + 5
    custom = TrainDataset(roots, ['derain', 'dehaze'], 8, replication={'derain': 2})
    assert len(custom) == 3 * 2 + 3 * 1
    # samples run through each token's list in turn, repeated
    assert [custom[i]['task'] for i in range(len(custom))] == [3] * 6 + [4] * 3
    assert [custom[i]['name'] for i in range(3)] == [custom[i]['name'] for i in range(3, 6)]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_items_are_aligned_patches_in_unit_range(roots):
    data = TrainDataset(roots, ALL, 8, replication=dict.fromkeys(ALL, 1))
    seen = set()
    for item in (data[i] for i in range(len(data))):
        assert set(item) == {'lq', 'gt', 'task', 'name'}
        assert item['lq'].shape == item['gt'].shape == (3, 8, 8) and item['lq'].dtype == torch.float32
        assert 0 <= item['gt'].min() and item['gt'].max() <= 1
        if item['task'] not in (0, 1, 2):  # paired: the degraded file is the clean one's negative
            torch.testing.assert_close(item['lq'], 1 - item['gt'], rtol=0, atol=1e-6)
        seen.add(item['task'])
    assert seen == set(DE_TYPES.values())


def test_noise_is_made_on_the_fly_at_the_tokens_sigma(roots):
    for token, sigma in (('denoise_15', 15), ('denoise_50', 50)):
        data = TrainDataset(roots, [token], 16)
        residual = torch.cat([(d['lq'] - d['gt']).flatten() for d in (data[i] for i in range(len(data)))]) * 255
        assert residual.std().item() == pytest.approx(sigma, rel=0.25)
        assert data[0]['task'] == DE_TYPES[token]


def test_random_crop_takes_the_same_window_of_every_image():
    base = np.arange(10 * 12 * 3, dtype=np.int64).reshape(10, 12, 3)
    lq, gt = random_crop([base, base * 2], 4, np.random.default_rng(0))
    assert lq.shape == (4, 4, 3) and np.array_equal(gt, lq * 2)
    top, left = np.argwhere(base[..., 0] == lq[0, 0, 0])[0]
    assert np.array_equal(lq, base[top:top + 4, left:left + 4])


def test_random_crop_reflect_pads_small_images():
    small = np.arange(3 * 2 * 3, dtype=np.int64).reshape(3, 2, 3)
    patch = random_crop([small], 5, np.random.default_rng(0))[0]
    assert patch.shape == (5, 5, 3)
    assert np.array_equal(patch, np.pad(small, ((0, 2), (0, 3), (0, 0)), mode='reflect'))


def test_dihedral_gives_the_eight_symmetries_of_the_square():
    image = np.arange(9).reshape(3, 3, 1)
    results = {dihedral(image, mode).tobytes() for mode in range(8)}
    assert len(results) == 8
    assert np.array_equal(dihedral(image, 1), np.rot90(image)) and np.array_equal(dihedral(image, 4), image[:, ::-1])


def test_sample_randomness_depends_on_seed_epoch_and_index_only(roots):
    a, b = TrainDataset(roots, THREE_TASK, 8, seed=3), TrainDataset(roots, THREE_TASK, 8, seed=3)
    for index in (0, 5, len(a) - 1):
        assert same(a[index], b[index])
    before = a[5]['lq']
    a.set_epoch(1)
    assert a.epoch == 1 and not torch.equal(a[5]['lq'], before)
    b.set_epoch(1)
    assert torch.equal(a[5]['lq'], b[5]['lq'])
    assert not torch.equal(TrainDataset(roots, THREE_TASK, 8, seed=4)[5]['lq'], before)


def _epochs(dataset, workers: int) -> list[torch.Tensor]:
    loader = DataLoader(dataset, batch_size=3, num_workers=workers, persistent_workers=workers > 0)
    out = []
    for epoch in range(2):
        dataset.set_epoch(epoch)  # reaches the persistent workers through shared memory
        out.append(torch.cat([torch.cat([b['lq'], b['gt']]) for b in loader]))
    return out


def test_dataloader_workers_give_the_same_samples(roots):
    torch.set_num_threads(1)
    data = TrainDataset(roots, ['denoise_25', 'derain', 'deblur'], 8, replication={'derain': 2, 'deblur': 2})
    alone, workers = _epochs(data, 0), _epochs(data, 2)
    assert not torch.equal(alone[0], alone[1])
    for one, many in zip(alone, workers, strict=True):
        assert torch.equal(one, many)


def test_cache_gives_the_same_samples(roots):
    plain, cached = TrainDataset(roots, ALL, 8), TrainDataset(roots, ALL, 8, cache=True)
    for index in range(0, len(plain), 97):
        assert same(plain[index], cached[index])


def test_clean_patch_source_is_independent_of_the_pairing(roots):
    pairs = TrainDataset(roots, ['dehaze', 'derain'], 8, replication={'derain': 20})
    clean = CleanPatchSource(roots, ['dehaze', 'derain'], 8, replication={'derain': 20})
    assert len(clean) == len(pairs) == 3 + 3 * 20  # index i of both can be drawn together
    assert [p.name for p in clean.clean['dehaze']] == ['0001', '0002']  # distinct OTS clean images
    item = clean[0]
    assert set(item) == {'gt', 'task', 'name'} and item['gt'].shape == (3, 8, 8)
    assert [clean[i]['task'] for i in range(len(clean))] == [pairs[i]['task'] for i in range(len(pairs))]
    names = [clean[i]['name'] for i in range(3, len(clean))]
    partners = [pairs[i]['name'].replace('rain', 'norain') for i in range(3, len(clean))]
    assert set(names) == {'norain-1', 'norain-2', 'norain-10'}
    assert sum(n == p for n, p in zip(names, partners, strict=True)) < len(names) / 2


def test_unreadable_files_raise_or_are_skipped_and_counted(roots):
    (roots['derain'] / 'rainy/rain-2.png').write_bytes(b'\x89PNG broken')
    data = TrainDataset(roots, ['derain'], 8, replication={'derain': 1})
    with pytest.raises(ImageReadError, match=r'rain-2\.png.*skip_unreadable=True'):
        [data[i] for i in range(len(data))]
    for cache in (False, True):
        skipping = TrainDataset(roots, ['derain'], 8, replication={'derain': 4}, skip_unreadable=True, cache=cache)
        names = [skipping[i]['name'] for i in range(len(skipping))]
        assert 'rain-2' not in names and len(names) == 12
        assert skipping.skipped_unreadable == 4
    (roots['derain'] / 'rainy/rain-1.png').write_bytes(b'')
    (roots['derain'] / 'rainy/rain-10.png').write_bytes(b'')
    with pytest.raises(ImageReadError, match='--de_type derain: none of its 3 images is readable'):
        TrainDataset(roots, ['derain'], 8, skip_unreadable=True)[0]


def test_skip_counts_reach_the_main_process_from_workers(roots):
    torch.set_num_threads(1)
    (roots['lowlight'] / 'high/2.png').write_bytes(b'')
    write_pair(roots['lowlight'] / 'low/3.png', roots['lowlight'] / 'high/3.png', 5)
    data = TrainDataset(roots, ['lowlight'], 8, replication={'lowlight': 3}, skip_unreadable=True)
    batches = list(DataLoader(data, batch_size=2, num_workers=2))
    assert sum(len(b['name']) for b in batches) == 6 and data.skipped_unreadable == 3


def test_pairs_of_different_sizes_are_an_error(roots):
    write_rgb(roots['single'] / 'degraded/x.png', np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DataLayoutError, match=r'x\.png \(5, 5\) and .*x\.png \(20, 24\) differ in size'):
        TrainDataset(roots, ['single'], 8)[0]


def test_bad_arguments_are_errors(roots):
    with pytest.raises(ValueError, match='--de_type: unknown token'):
        TrainDataset(roots, ['derain', 'rain'], 8)
    with pytest.raises(ValueError, match=r"replication: unknown token\(s\) \['rain'\]"):
        TrainDataset(roots, ['derain'], 8, replication={'rain': 2})
    with pytest.raises(DataLayoutError, match="no training root for task 'deblur'"):
        TrainDataset({'derain': roots['derain']}, ['derain', 'deblur'], 8)
    with pytest.raises(DataLayoutError, match='Dehaze.synthetic does not exist'):
        TrainDataset({**roots, 'dehaze': roots['dehaze'].parent / 'Dehaze_missing' / 'Dehaze'}, ['dehaze'], 8)
    with pytest.raises(ValueError, match='patch_size'):
        TrainDataset(roots, ['derain'], 0)


def test_default_train_roots_accepts_low_light(tmp_path):
    roots = default_train_roots(tmp_path)
    assert roots['lowlight'] == tmp_path / 'lowlight' and roots['denoise'] == tmp_path / 'Denoise'
    (tmp_path / 'low_light').mkdir()
    assert default_train_roots(tmp_path)['lowlight'] == tmp_path / 'low_light'
    assert set(roots) == {'denoise', 'derain', 'dehaze', 'deblur', 'lowlight', 'single'}


def test_hold_out_takes_whole_clean_images_chosen_by_seed():
    # Two hazy versions of each of five scenes, as in OTS.
    pairs = tuple(Pair(Path(f'hazy/{scene}_{beta}.png'), Path(f'clear/{scene}.png'), f'{scene}_{beta}')
                  for scene in range(5) for beta in (1, 2))
    train, validation = hold_out(pairs, 2, seed=0, task='dehaze')
    held = {pair.gt for pair in validation}
    assert len(validation) == 2 == len(held) and len(train) == 6
    assert not held & {pair.gt for pair in train}  # no scene in both
    assert all(pair.name.endswith('_1') for pair in validation)  # the first pair of each held-out scene
    assert hold_out(pairs, 2, seed=0, task='dehaze') == (train, validation)
    others = {tuple(pair.gt for pair in hold_out(pairs, 2, seed=seed, task='dehaze')[1]) for seed in range(8)}
    assert len(others) > 1  # another seed holds out other scenes
    with pytest.raises(DataLayoutError, match='--val_split 5: task dehaze has 5 clean'):
        hold_out(pairs, 5, seed=0, task='dehaze')


def test_val_split_leaves_the_held_out_images_out_of_every_epoch(roots):
    full = TrainDataset(roots, ['denoise_15', 'derain'], 8, replication={'denoise_15': 1, 'derain': 1})
    split = TrainDataset(roots, ['denoise_15', 'derain'], 8, replication={'denoise_15': 1, 'derain': 1}, val_split=1)
    assert sorted(split.held_out) == ['denoise', 'derain'] and all(len(p) == 1 for p in split.held_out.values())
    assert len(split) == len(full) - 2
    names = {split[i]['name'] for i in range(len(split))}
    assert not names & {pair.name for pairs in split.held_out.values() for pair in pairs}
    clean = CleanPatchSource(roots, ['denoise_15', 'derain'], 8, replication={'denoise_15': 1, 'derain': 1},
                             val_split=1)
    assert clean.held_out == split.held_out  # the unpaired critic never sees them either
