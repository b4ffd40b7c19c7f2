"""Shared pieces of the evaluation tests: a tiny checkpoint, a tiny test tree of every task, simple maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.image_io import write_rgb
from net import MRCNet
from utils.checkpoint import FORMAT, VERSION, model_spec, save_checkpoint

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))

# task -> (degraded path, clean path) of each pair, relative to the test root; denoise sets hold clean images.
TREE = {
    'denoise': [(None, 'denoise/bsd68/101085.png'), (None, 'denoise/bsd68/3096.png')],
    'derain': [('derain/Rain100L/input/rain-1.png', 'derain/Rain100L/target/norain-1.png'),
               ('derain/Rain100L/input/rain-2.png', 'derain/Rain100L/target/norain-2.png')],
    'dehaze': [('dehaze/input/0001_0.8_0.2.png', 'dehaze/target/0001.png'),
               ('dehaze/input/0002_0.9_0.16.png', 'dehaze/target/0002.png')],
    'deblur': [('deblur/input/GOPR0384_11_00/000001.png', 'deblur/target/GOPR0384_11_00/000001.png'),
               ('deblur/input/GOPR0410_11_00/000001.png', 'deblur/target/GOPR0410_11_00/000001.png')],
    'lowlight': [('lowlight/low/1.png', 'lowlight/high/1.png'), ('lowlight/low/22.png', 'lowlight/high/22.png')],
    'mixed': [('mixed/input/a.png', 'mixed/target/a.png')],
}


def tiny_map(seed: int = 0, dim: int = 8) -> MRCNet:
    torch.manual_seed(seed)
    return MRCNet(**{**TINY, 'dim': dim}).eval()


def tiny_checkpoint(path: Path, seed: int = 0, dim: int = 8) -> Path:
    """A darcot checkpoint of a randomly initialised tiny MRCNet (dim 4 restores 480x320 in about a second)."""
    return save_checkpoint({'format': FORMAT, 'version': VERSION, 'model': model_spec('MRCNet', {**TINY, 'dim': dim}),
                            'map': tiny_map(seed, dim).state_dict()}, path)


def write_test_tree(root: Path, size: tuple[int, int] = (21, 30)) -> dict[str, list[tuple[Path | None, Path]]]:
    """Every task of the README test layout with tiny images; each degraded image is its target plus a
    distinct perturbation. Returns the pairs written, per task, as absolute paths."""
    rng = np.random.default_rng(0)
    written = {}
    for task, pairs in TREE.items():
        written[task] = []
        for k, (lq, gt) in enumerate(pairs):
            clean = rng.integers(30, 226, (*size, 3), dtype=np.uint8)
            write_rgb(root / gt, clean)
            if lq is not None:
                degraded = np.clip(clean.astype(int) + rng.integers(-8 * (k + 1), 8 * (k + 1) + 1, clean.shape), 0, 255)
                write_rgb(root / lq, degraded.astype(np.uint8))
            written[task].append((None if lq is None else root / lq, root / gt))
    return written


class Identity(nn.Module):
    """T(x) = x, counting its calls: restored metrics equal input metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []
        self.anchor = nn.Parameter(torch.zeros(()))  # so that .train()/.eval() and devices behave as for a network

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return x, x[..., ::8, ::8] + self.anchor
