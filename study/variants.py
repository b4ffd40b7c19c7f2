"""The study's variants (the paper's ablations, as trainer flags) and its scales (model size, data, budget).

A scale's `prepare(work_dir)` lays its data out as the trees the trainer reads (symlinks below `work_dir`,
never copies) and returns the data flags and the test root; validation and the final table use the first
`val_images` images of every test set of that root (all of them when 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data.demo import ensure_demo
from data.layouts import shared_data
from data.tasks import ALL_TOKENS
from data.test_sets import find_test_sets

# Variant -> the trainer flags that make it, on top of the scale's flags. DA-RCOT is the paper's full method.
VARIANTS: dict[str, tuple[str, ...]] = {
    'DA-RCOT': (),
    'Restormer': ('--backbone', 'Restormer'),  # same objective, no residual conditioning
    'RCNet': ('--backbone', 'RCNet'),  # conditioning at the latent only
    'no-Fourier': ('--no_fourier',),  # no degradation-aware Fourier transport cost
    'L1-only': ('--objective', 'l1'),  # the paired L1 term alone: no critic, no transport cost
    'unpaired': ('--pairnum', '0'),  # every iteration unpaired, independent clean patches for the critic
}
# Variants run with every seed of `--seeds`; the others with the first seed only. DA-RCOT against Restormer is
# the paper's central claim (residual conditioning), so those two get the seeds that tell a difference from noise.
MAIN_VARIANTS = ('DA-RCOT', 'Restormer')

# The reduced transport map and schedule of both CPU scales, spelled out (not the demo preset, which the README's
# main job tunes): one block per level, dim 8, 32 x 32 patches, batch 4, Adam, map lr 1e-3, all seven tokens, every
# file of the (demo or shared) folders: they are not the paper's listed training images.
SMALL_MODEL = ('--preset', 'tiny', '--batchSize', '4', '--optimizer', 'Adam', '--map_lr', '1e-3', '--nEpochs', '15',
               '--step', '11', '--type', 'demo', '--cache', '--data_lists', 'none',
               '--de_type', *ALL_TOKENS,
               '--replication', 'denoise_15=1', 'denoise_25=1', 'denoise_50=1', 'derain=1', 'dehaze=2', 'deblur=2',
               'lowlight=1', '--log_every', '1', '--save_every', '100000', '--image_every', '100000')
SHARED_DATA = shared_data()


@dataclass(frozen=True)
class Scale:
    """One scale of the study: trainer flags common to every variant, the budget, and the data."""

    name: str
    flags: tuple[str, ...]
    val_tasks: tuple[str, ...]
    iters: int | None  # iterations per run; None: the flags' own epochs
    val_every: int
    seeds: tuple[int, ...]
    val_images: int  # images per test set for validation and the table; 0: all
    device: str  # the trainer's --device
    prepare: Callable[[Path], tuple[list[str], Path]]


def _prepare_demo(work_dir: Path) -> tuple[list[str], Path]:
    train_root, test_root = ensure_demo('data/demo')
    return ['--data_root', str(train_root)], test_root


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


def _prepare_shared(work_dir: Path) -> tuple[list[str], Path]:
    """Rain100H pairs and the demo photographs (noise made on the fly, and the demo's synthetic haze) for
    training; CBSD68, Rain12 and the SOTS-outdoor pairs for testing."""
    missing = [name for name in ('CBSD68', 'Rain12', 'Rain100H', 'SOTS_outdoor_subset')
               if not (SHARED_DATA / name).is_dir()]
    if missing:
        raise SystemExit(f'--scale shared needs {", ".join(missing)} in {SHARED_DATA} (see its SOURCES.md); '
                         'set DARCOT_SHARED_DATA to the folder that holds them')
    demo_train, _ = ensure_demo('data/demo')
    derain = work_dir / 'data' / 'Derain'
    _link(SHARED_DATA / 'Rain100H' / 'input', derain / 'rainy')
    _link(SHARED_DATA / 'Rain100H' / 'target', derain / 'gt')
    test_root = work_dir / 'data' / 'Test'
    _link(SHARED_DATA / 'CBSD68', test_root / 'denoise' / 'CBSD68')
    _link(SHARED_DATA / 'Rain12', test_root / 'derain' / 'Rain12')
    _link(SHARED_DATA / 'SOTS_outdoor_subset', test_root / 'dehaze' / 'SOTS')
    flags = ['--derain_dir', str(derain), '--dehaze_dir', str(demo_train / 'Dehaze'),
             '--denoise_dir', str(demo_train / 'Denoise')]
    return flags, test_root


def _prepare_paper(work_dir: Path) -> tuple[list[str], Path]:
    return ['--data_root', 'data/Train'], Path('data/Test')


SCALES: dict[str, Scale] = {
    'demo': Scale('demo', SMALL_MODEL, val_tasks=('denoise', 'derain', 'dehaze', 'deblur', 'lowlight'), iters=80,
                  val_every=20, seeds=(0, 1, 2), val_images=1, device='cpu', prepare=_prepare_demo),
    'shared': Scale('shared', (*SMALL_MODEL, '--de_type', 'derain', 'dehaze', 'denoise_15', 'denoise_25',
                               'denoise_50', '--replication', 'derain=1', 'dehaze=3', 'denoise_15=4', 'denoise_25=4',
                               'denoise_50=4'),
                    val_tasks=('denoise', 'derain', 'dehaze'), iters=48, val_every=16, seeds=(0, 1, 2), val_images=2,
                    device='cpu', prepare=_prepare_shared),
    # The paper's three-task setting with the options' paper defaults (full MRCNet, 128 x 128 patches, RMSprop,
    # 50 epochs of the official replication), validated on all of data/Test every 5000 iterations.
    'paper': Scale('paper', ('--preset', 'paper', '--de_type', 'derain', 'dehaze', 'denoise_15', 'denoise_25',
                             'denoise_50'),
                   val_tasks=('denoise', 'derain', 'dehaze'), iters=None, val_every=5000, seeds=(0, 1, 2),
                   val_images=0, device='0', prepare=_prepare_paper),
}


def link_subset(test_root: Path, tasks: tuple[str, ...], n_images: int, out: Path) -> Path:
    """A test tree at `out` holding the first `n_images` pairs (0: all) of every set of `tasks` below
    `test_root`, as symlinks named by the pair, so that `find_test_sets` pairs them again. Returns `out`."""
    sets, missing = find_test_sets(test_root, tasks)
    if missing:
        raise SystemExit('; '.join(missing))
    for test_set in sets:
        if test_set.sigma not in (None, 15):  # a denoising set is listed once per sigma; link its images once
            continue
        folder = out / test_set.task / test_set.name
        for pair in test_set.pairs[:n_images or None]:
            stem = pair.name.replace('/', '_')
            if pair.lq is None:
                _link(pair.gt, folder / f'{stem}{pair.gt.suffix}')
            else:
                _link(pair.lq, folder / 'input' / f'{stem}{pair.lq.suffix}')
                _link(pair.gt, folder / 'target' / f'{stem}{pair.gt.suffix}')
    return out


def runs(scale: Scale, variants: tuple[str, ...], seeds: tuple[int, ...]) -> list[tuple[str, int]]:
    """(variant, seed) of every run: main variants with every seed, the others with the first."""
    return [(variant, seed) for variant in variants for seed in (seeds if variant in MAIN_VARIANTS else seeds[:1])]
