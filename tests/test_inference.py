"""Whole-image inference helpers: tiling (blending is exact where the map is local, equal
to whole-image inference where a tile covers the image, close for small tiles), mixed precision, memory errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from net import MRCNet
from utils.inference import InferenceMemoryError, restore, tile_starts

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))


class Pointwise(nn.Module):
    """A map whose output at a pixel depends on that pixel only: tiling must not change it at all."""

    def forward(self, x):
        return x * 0.5 + x ** 2 * 0.25 + 0.1, x[..., ::8, ::8]


class Failing(nn.Module):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def forward(self, x):
        raise self.error


@pytest.fixture(scope='module')
def tiny_map():
    torch.manual_seed(0)
    return MRCNet(**TINY).eval()


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(h // 8, 2), max(w // 8, 2), generator=generator)
    return nn.functional.interpolate(coarse, size=(h, w), mode='bilinear', align_corners=False)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 600), tile=st.integers(8, 128), overlap=st.integers(0, 60))
def test_tiles_cover_every_pixel_with_the_overlap(length, tile, overlap):
    overlap = min(overlap, tile // 2)
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:], strict=False))  # shared >= overlap
    assert len(starts) == (1 if tile >= length else -(-(length - overlap) // (tile - overlap)))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), tile=st.sampled_from([8, 16, 24, 40]),
       overlap=st.sampled_from([0, 2, 4, 8]))
def test_blending_is_exact_for_a_pointwise_map(h, w, tile, overlap):
    overlap = min(overlap, tile // 2)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    whole, _ = restore(Pointwise(), x)
    tiled, _ = restore(Pointwise(), x, tile=tile, tile_overlap=overlap)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize('size', [(21, 30), (64, 40)])
def test_a_tile_covering_the_image_is_whole_image_inference(tiny_map, size):
    x = smooth_image(*size)
    with torch.inference_mode():
        whole, pooled = restore(tiny_map, x)
        tiled, tiled_pooled = restore(tiny_map, x, tile=64, tile_overlap=16)
        _, embedding = tiny_map(x)
    assert torch.equal(tiled, whole) and torch.equal(tiled_pooled, pooled)
    torch.testing.assert_close(pooled, embedding.mean(dim=(2, 3)))


def test_small_tiles_stay_close_to_whole_image_inference(tiny_map):
    """MDTA attends over all pixels of its input, so tiles change the result a little. Tolerance: the mean
    change is under a fifth of the mean correction |T(x) - x| (a random tiny map; 32-pixel tiles, 16 shared)."""
    x = smooth_image(64, 80)
    with torch.inference_mode():
        whole, _ = restore(tiny_map, x)
        tiled, _ = restore(tiny_map, x, tile=32, tile_overlap=16)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.2 * (whole - x).abs().mean()
    assert (tiled - whole).abs().max() < 0.1


def test_bfloat16_autocast_stays_close(tiny_map):
    x = smooth_image(24, 24)
    with torch.inference_mode():
        full, _ = restore(tiny_map, x)
        amp, _ = restore(tiny_map, x, amp=True)
    assert amp.dtype == torch.float32
    assert (amp - full).abs().max() < 0.05


@pytest.mark.parametrize('error', [torch.OutOfMemoryError('CUDA out of memory'),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"),
                                   MemoryError()])
def test_running_out_of_memory_suggests_tiles(error):
    with pytest.raises(InferenceMemoryError, match=r'2160x3840 .*--tile 512'):
        restore(Failing(error), torch.zeros(1, 3, 2160, 3840))
    with pytest.raises(InferenceMemoryError, match='smaller tiles than --tile 256'):
        restore(Failing(error), torch.zeros(1, 3, 600, 600), tile=256)


def test_other_errors_pass_through():
    with pytest.raises(RuntimeError, match='shape mismatch'):
        restore(Failing(RuntimeError('shape mismatch')), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match='--tile_overlap'):
        restore(Pointwise(), torch.zeros(1, 3, 40, 40), tile=16, tile_overlap=16)
