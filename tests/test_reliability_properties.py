"""Property-based tests (hypothesis) of the pure pieces the reliability of a run rests on: padding to a multiple
and cropping back, tiled inference when one tile covers the image, and pairing by name."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.layouts import TEST_LAYOUT, pair_by_name
from net.blocks import pad_to_multiple
from tests.fixtures import tiny_map
from utils.inference import restore


@pytest.fixture(scope='module')
def network():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_map()
    torch.set_num_threads(threads)


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 200), w=st.integers(1, 200), multiple=st.sampled_from([8, 16, 32]))
def test_padding_reaches_the_multiple_and_cropping_gives_the_input_back(h, w, multiple):
    x = torch.rand(1, 3, h, w)
    padded, size = pad_to_multiple(x, multiple)
    assert size == (h, w) and padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(padded[..., :h, :w], x)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 40), w=st.integers(1, 40), extra=st.integers(0, 2), overlap=st.sampled_from([0, 2, 4]))
def test_a_tile_covering_the_image_is_whole_image_inference_at_any_size(network, h, w, extra, overlap):
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 41 + w))
    tile = (-(-max(h, w, overlap * 2 + 1) // 8) + extra) * 8  # a multiple of 8 covering the image
    with torch.inference_mode():
        whole, _ = restore(network, x)
        tiled, _ = restore(network, x, tile=tile, tile_overlap=overlap)
    assert whole.shape == x.shape and torch.allclose(tiled, whole, atol=1e-6)


STEMS = st.sampled_from(['a', 'b', 'a_1', 'a_2', 'rain-1', 'norain-1', 'c.d', 'e f', 'é'])
FILES = st.sets(st.tuples(STEMS, st.sampled_from(['.png', '.jpg'])), max_size=8)


@settings(max_examples=120, deadline=None)
@given(degraded=FILES, clean=FILES)
def test_pairing_by_name_accounts_for_every_file(degraded, clean):
    """Every degraded file is paired, unmatched or named in a problem; pair names are unique (one output per
    name); each clean file is used, unmatched, or the partner of degraded files a problem names."""
    with tempfile.TemporaryDirectory() as folder:
        lq_dir, gt_dir = Path(folder) / 'lq', Path(folder) / 'gt'
        for directory, files in ((lq_dir, degraded), (gt_dir, clean)):
            directory.mkdir()
            for stem, ext in files:
                (directory / f'{stem}{ext}').write_bytes(b'')  # pairing lists files; it does not decode them
        if not degraded or not clean:
            return  # an empty folder is an error, tested in test_data_layouts
        pairing = pair_by_name(lq_dir, gt_dir, TEST_LAYOUT)
        problems = '\n'.join(pairing.ambiguous)
        lq_files = {lq_dir / f'{stem}{ext}' for stem, ext in degraded}
        paired = [pair.lq for pair in pairing.pairs]
        assert len(paired) == len(set(paired)) and set(paired).isdisjoint(pairing.unmatched_lq)
        for path in lq_files - set(paired) - set(pairing.unmatched_lq):
            assert str(path) in problems
        assert set(paired) | set(pairing.unmatched_lq) <= lq_files
        names = [pair.name for pair in pairing.pairs]
        assert len(names) == len(set(names)) and all(pair.name == pair.lq.stem for pair in pairing.pairs)
        used = {pair.gt for pair in pairing.pairs}
        assert used.isdisjoint(pairing.unmatched_gt)
        if {gt_dir / f'{stem}{ext}' for stem, ext in clean} - used - set(pairing.unmatched_gt):
            assert problems  # the partner of ambiguous or name-sharing degraded files, which the problems name
        for pair in pairing.pairs:  # a partner is the same stem, norain-N for rain-N, or the part before '_'
            stem = pair.lq.stem
            assert pair.gt.stem in (stem, f'no{stem}', stem.split('_', 1)[0])
