"""What several test files share: tiny data trees (training and test layouts), the tiny trainer flags, a tiny
checkpoint, simple maps, test.py loaded as a module, and official-style pickled checkpoints."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.image_io import read_rgb, write_rgb
from net import Critic, MRCNet, blocks
from utils.checkpoint import FORMAT, VERSION, model_spec, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))
TERMS = ('loss', 'critic_loss', 'gp', 'pix', 'fourier', 'contrastive', 'l1', 'critic_on_output', 'skipped')

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


class InterruptAfter(Identity):
    """The identity, raising KeyboardInterrupt at call number `calls` (an interrupted evaluation)."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.limit = calls

    def forward(self, x):
        if len(self.calls) == self.limit:
            raise KeyboardInterrupt
        return super().forward(x)


SIZE = (20, 24)


def write_pair(lq: Path, gt: Path, seed: int, size: tuple[int, int] = SIZE) -> None:
    """A random clean image at `gt` and its negative at `lq` (`lq` None: the clean image only)."""
    clean = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    write_rgb(gt, clean)
    if lq is not None:
        write_rgb(lq, 255 - clean)


def make_train_tree(root: Path) -> dict[str, Path]:
    """A tiny training tree in every layout of TRAIN_LAYOUT; returns the task roots."""
    write_pair(None, root / 'Denoise/a.png', 1)
    write_pair(None, root / 'Denoise/WED/b.png', 2, (30, 18))
    for n in (1, 2, 10):  # sorted: rain-1, rain-10, rain-2
        write_pair(root / f'Derain/rainy/rain-{n}.png', root / f'Derain/gt/norain-{n}.png', 10 + n)
    write_pair(root / 'Dehaze/synthetic/part1/0001_0.8_0.2.png', root / 'Dehaze/original/0001.png', 21)
    write_pair(root / 'Dehaze/synthetic/part2/0002_0.9_0.1.png', root / 'Dehaze/original/0002.png', 22)
    write_rgb(root / 'Dehaze/synthetic/part2/0001_1_0.16.png', 255 - read_rgb(root / 'Dehaze/original/0001.png'))
    for seq, seed in (('GOPR0372_07_00', 31), ('GOPR0374_11_00', 32)):  # GoPro repeats names across sequences
        write_pair(root / f'Deblur/blur/{seq}/000047.png', root / f'Deblur/sharp/{seq}/000047.png', seed)
    write_pair(root / 'lowlight/low/2.png', root / 'lowlight/high/2.png', 41)
    write_pair(root / 'single/degraded/x.png', root / 'single/target/x.png', 51)
    return {'denoise': root / 'Denoise', 'derain': root / 'Derain', 'dehaze': root / 'Dehaze',
            'deblur': root / 'Deblur', 'lowlight': root / 'lowlight', 'single': root / 'single'}


def make_test_tree(root: Path) -> Path:
    """A tiny test tree in every layout of TEST_LAYOUT (and a `mixed` set); returns `root`."""
    write_pair(None, root / 'denoise/bsd68/1.png', 61)
    write_pair(None, root / 'denoise/kodak24/kodim01.png', 62, (18, 26))
    write_pair(root / 'derain/Rain100L/input/rain-001.png', root / 'derain/Rain100L/target/norain-001.png', 63)
    write_pair(root / 'derain/Rain100L/input/rain-002.png', root / 'derain/Rain100L/target/norain-002.png', 64)
    write_pair(root / 'dehaze/input/0001_0.8_0.2.png', root / 'dehaze/target/0001.png', 65)
    write_pair(root / 'deblur/input/GOPR0384_11_00-000001.png', root / 'deblur/target/GOPR0384_11_00-000001.png', 66)
    write_pair(root / 'lowlight/low/1.png', root / 'lowlight/high/1.png', 67)
    write_pair(root / 'mixed/input/m.png', root / 'mixed/target/m.png', 68)
    return root


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour image (a blurred noise field), uint8 H x W x 3."""
    coarse = rng.random((h // 8 + 2, w // 8 + 2, 3))
    return (np.kron(coarse, np.ones((8, 8, 1)))[:h, :w] * 255).astype(np.uint8)


def write_tiny_data(root: Path) -> Path:
    """Train: 3 clean images (noise) and 2 rain pairs; Test: 2 odd-sized rain pairs. Returns `root`."""
    rng = np.random.default_rng(0)
    for i in range(3):
        write_rgb(root / 'Train/Denoise' / f'clean{i}.png', _image(rng, 40, 48))
    for i in range(1, 3):
        clean = _image(rng, 48, 40)
        rainy = np.clip(clean.astype(int) + 40, 0, 255).astype(np.uint8)
        write_rgb(root / 'Train/Derain/gt' / f'norain-{i}.png', clean)
        write_rgb(root / 'Train/Derain/rainy' / f'rain-{i}.png', rainy)
        write_rgb(root / 'Test/derain/input' / f'rain-{i}.png', _image(rng, 37, 45))
        write_rgb(root / 'Test/derain/target' / f'norain-{i}.png', _image(rng, 37, 45))
    return root


def tiny_argv(data: Path, out: Path, *extra: str) -> list[str]:
    """Trainer flags for the tiny data: 5 samples in batches of 2, so 3 iterations per epoch, the last of one
    sample; iteration 0 is paired, 1-2 unpaired. float32 (`--amp off`), whatever the CPU: a later `--amp` wins."""
    return ['--preset', 'tiny', '--device', 'cpu', '--amp', 'off', '--data_root', str(data / 'Train'),
            '--data_lists', 'none',  # the tiny tree is not the paper's data: every file of it
            '--de_type', 'denoise_15', 'derain', '--replication', 'denoise_15=1', 'derain=1', '--batchSize', '2',
            '--pairnum', '2',
            '--nEpochs', '2', '--save_every', '2', '--log_every', '1', '--image_every', '2', '--threads', '0',
            '--ckpt_dir', str(out / 'ckpt'), '--log_dir', str(out / 'log'), *extra]


def records(out: Path) -> list[dict]:
    """The training records of metrics.jsonl under `out/log` (validation records left out)."""
    lines = (out / 'log/metrics.jsonl').read_text().splitlines()
    return [record for record in map(json.loads, lines) if 'validation' not in record]


# Loaded by path: `import test` could find the standard library's `test` package instead.
_spec = importlib.util.spec_from_file_location('darcot_test_script', ROOT / 'test.py')
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


# Official checkpoints: the authors' trainer pickles whole modules of its `model_res` classes.
OFFICIAL_TINY = dict(dim=8, num_blocks=(1, 2, 1, 1), num_refinement_blocks=2, heads=(1, 2, 4, 8))
OUR_CLASS_NAMES = {MRCNet: 'MRCNet', Critic: 'F_net', blocks.TransformerBlock: 'TransformerBlock',
                   blocks.MDTA: 'Attention', blocks.GDFN: 'FeedForward', blocks.LayerNorm: 'LayerNorm',
                   blocks.OverlapPatchEmbed: 'OverlapPatchEmbed', blocks.Downsample: 'Downsample',
                   blocks.Upsample: 'Upsample'}


def model_res_module() -> types.ModuleType:
    """A stand-in for the authors' `model_res`: classes of the official names (subclasses of ours)."""
    module = types.ModuleType('model_res')
    bases = {**{name: cls for cls, name in OUR_CLASS_NAMES.items()},
             'WithBias_LayerNorm': blocks._ChannelNormBody, 'BiasFree_LayerNorm': blocks._ChannelNormBody}
    for name, base in bases.items():
        setattr(module, name, type(name, (base,), {'__module__': 'model_res', '__qualname__': name}))
    return module


def as_official(network: nn.Module, module: types.ModuleType) -> nn.Module:
    """Gives every project module of `network` its official class, so torch.save pickles `model_res.<name>`."""
    for sub in network.modules():
        if type(sub) in OUR_CLASS_NAMES:
            sub.__class__ = getattr(module, OUR_CLASS_NAMES[type(sub)])
        elif type(sub) is blocks._ChannelNormBody:
            sub.__class__ = getattr(module, 'WithBias_LayerNorm' if sub.bias is not None else 'BiasFree_LayerNorm')
    return network


def save_official(path: Path, content: dict, module: types.ModuleType, monkeypatch) -> None:
    """torch.save as the authors' trainer does, then forget `model_res` again."""
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, 'model_res', module)
        torch.save(content, path)
    assert 'model_res' not in sys.modules
