"""Running a transport map on whole images: tiling, mixed precision, memory errors.

The networks pad to their size multiple and crop back themselves, so an image goes through whole and comes
back at its full size (the official testers' trimming is a test-set protocol: `data.test_sets`). `--tile N`
restores an image in overlapping N x N tiles instead (`tile_overlap` pixels shared by neighbours), blended
with a separable window that ramps linearly across each shared band, so the memory needed depends on N, not
on the image. A tile that covers the image is plain whole-image inference.
"""

from __future__ import annotations

import torch
from torch import nn

from options import TILE_OVERLAP, tile_problem
from utils.precision import autocast


class InferenceMemoryError(RuntimeError):
    """An image too large for the memory of the device, with the flags that make it fit."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the fewest tiles of size `tile` that cover `length` with at least `overlap` pixels
    shared by neighbours, spread evenly; the first starts at 0 and the last ends at `length`."""
    if tile >= length:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))  # ceil
    return [round(k * (length - tile) / (count - 1)) for k in range(count)]


def _ramp(length: int, fade_start: int, fade_end: int, device: torch.device) -> torch.Tensor:
    """Weights of one tile along one axis: linear ramps over the `fade_start` leading and `fade_end` trailing
    pixels (the bands shared with the neighbours), 1 elsewhere; never 0, so every pixel is covered."""
    position = torch.arange(length, device=device, dtype=torch.float32)
    weights = torch.ones(length, device=device)
    if fade_start:
        weights = torch.minimum(weights, (position + 1) / (fade_start + 1))
    if fade_end:
        weights = torch.minimum(weights, (length - position) / (fade_end + 1))
    return weights


def _forward(transport_map: nn.Module, x: torch.Tensor, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """T(x) in float32 and the residual embedding pooled over space (B x C)."""
    with autocast(x.device.type, amp):
        restored, embedding = transport_map(x)
    return restored.float(), embedding.float().mean(dim=(-2, -1))


def restore(transport_map: nn.Module, lq: torch.Tensor, *, tile: int | None = None,
            tile_overlap: int = TILE_OVERLAP, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Restores one 1 x 3 x H x W image (on the map's device) -> (T(x) 1 x 3 x H x W, pooled embedding 1 x C).

    With `tile`, overlapping tiles are restored one at a time and blended; the pooled embedding is then
    the area-weighted mean of the tiles' pooled embeddings.

    Raises:
        InferenceMemoryError: when the device runs out of memory, suggesting `--tile`.
        ValueError: for tiles that break `options.tile_problem`'s rule.
    """
    problem = tile_problem(tile, tile_overlap)
    if problem:
        raise ValueError(problem)
    h, w = lq.shape[-2:]
    try:
        if tile is None or (tile >= h and tile >= w):
            return _forward(transport_map, lq, amp)
        return _restore_tiled(transport_map, lq, tile, tile_overlap, amp)
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise _memory_error(h, w, lq.device, tile) from error
    except RuntimeError as error:
        # The CPU allocator reports exhaustion as a plain RuntimeError.
        if "can't allocate memory" in str(error) or 'out of memory' in str(error):
            raise _memory_error(h, w, lq.device, tile) from error
        raise


def _memory_error(h: int, w: int, device: torch.device, tile: int | None) -> InferenceMemoryError:
    advice = (f'use smaller tiles than --tile {tile}' if tile else
              'restore it in tiles, e.g. --tile 512 --tile_overlap 32 (or --tile 256 where memory is tighter)')
    return InferenceMemoryError(f'out of memory restoring a {h}x{w} image on {device}: {advice}')


def _restore_tiled(transport_map: nn.Module, lq: torch.Tensor, tile: int, overlap: int, amp: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f'--tile {tile} --tile_overlap {overlap}: need a positive tile larger than the overlap')
    h, w = lq.shape[-2:]
    rows, cols = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    tile_h, tile_w = min(tile, h), min(tile, w)
    output = torch.zeros(lq.shape, dtype=torch.float32, device=lq.device)
    weight_sum = torch.zeros((1, 1, h, w), dtype=torch.float32, device=lq.device)
    pooled, area = 0.0, 0
    for i, top in enumerate(rows):
        # Fade only across bands that a neighbouring tile shares, so the image border keeps full weight.
        fade_top = rows[i - 1] + tile_h - top if i else 0
        fade_bottom = top + tile_h - rows[i + 1] if i + 1 < len(rows) else 0
        row_weights = _ramp(tile_h, fade_top, fade_bottom, lq.device)
        for j, left in enumerate(cols):
            fade_left = cols[j - 1] + tile_w - left if j else 0
            fade_right = left + tile_w - cols[j + 1] if j + 1 < len(cols) else 0
            window = row_weights[:, None] * _ramp(tile_w, fade_left, fade_right, lq.device)[None, :]
            restored, embedding = _forward(transport_map, lq[..., top:top + tile_h, left:left + tile_w], amp)
            output[..., top:top + tile_h, left:left + tile_w] += restored * window
            weight_sum[..., top:top + tile_h, left:left + tile_w] += window
            pooled = pooled + embedding * tile_h * tile_w
            area += tile_h * tile_w
    return output / weight_sum, pooled / area
