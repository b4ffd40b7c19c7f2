"""Build the demo data set from the photographs that scikit-image ships inside its wheel (no download).

`python -m data.demo [--root data/demo] [--seed 0] [--force]` writes `<root>/Train` and `<root>/Test` in the
layouts of `data.layouts` (the same code reads them as it reads the paper's data sets), plus
`<root>/Test/mixed/{input,target}` where every image carries two degradations. Training uses astronaut
(less its top-right quarter), coffee (left part), rocket, the left stereo view of the motorcycle (left part),
the immunohistochemistry slide, and the grey camera and coins; testing uses the held-out regions of
astronaut, coffee and the motorcycle, and chelsea (the cat), 256 x 256 each. The degradations are those
of `data.synthetic` (haze on the motorcycle uses its stereo disparity as depth), calibrated so that the
demo test set's mean input PSNR matches the real benchmarks (`PSNR_TARGETS`). The build is seeded and
deterministic, takes seconds, and is written to a temporary folder that replaces `<root>` when complete.
"""

import argparse
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from skimage.metrics import peak_signal_noise_ratio

from data import synthetic
from data.image_io import write_rgb
from data.noise import add_gaussian_noise
from data.test_sets import find_test_sets

DEMO_VERSION = 4  # bump when the builder's output changes, so that ensure_demo rebuilds old demo sets
MANIFEST = 'demo.json'
MIXED_SIGMA = 15
# Blurred versions of each training photograph, each by its own random kernel: blind deblurring is learnt from
# many kernels, not from one per photograph.
BLUR_VARIANTS = 6
MIXED_FIRST = ('haze', 'rain', 'lowlight', 'blur')  # the first degradation of each mixed image, in turn
# Mean input PSNR (dB, RGB, data range 255) of the real test sets the demo imitates.
PSNR_TARGETS: dict[str, tuple[float, float, str]] = {
    'denoise_25': (19.0, 21.0, 'sigma 25 noise, ~20 dB'),
    'derain': (26.0, 29.0, 'Rain100L'),
    'dehaze': (15.0, 19.0, 'SOTS outdoor'),
    'deblur': (24.0, 27.0, 'GoPro'),
    'lowlight': (7.0, 10.0, 'LOL'),
}


@dataclass(frozen=True)
class Photo:
    """A clean photograph (uint8 H x W x 3) and, where known, its relative depth in [0, 1]."""

    name: str
    image: np.ndarray
    depth: np.ndarray | None = None


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2)


def photos() -> tuple[list[Photo], list[Photo]]:
    """The training and the test photographs: distinct photographs or non-overlapping regions of one."""
    astronaut, coffee = skimage.data.astronaut(), skimage.data.coffee()
    motorcycle, _, disparity = skimage.data.stereo_motorcycle()
    depth = synthetic.depth_from_disparity(disparity)
    train = [
        Photo('astronaut_bottom', astronaut[256:]),
        Photo('astronaut_topleft', astronaut[:256, :256]),
        Photo('coffee_left', coffee[:, :344]),
        Photo('rocket', skimage.data.rocket()),
        Photo('motorcycle_left', motorcycle[:, :485], depth[:, :485]),
        Photo('immunohistochemistry', skimage.data.immunohistochemistry()),
        Photo('camera', _grey(skimage.data.camera())),
        Photo('coins', _grey(skimage.data.coins())),
    ]
    test = [
        Photo('astronaut', astronaut[:256, 256:]),
        Photo('chelsea', skimage.data.chelsea()[22:278, 100:356]),
        Photo('coffee', coffee[144:400, 344:600]),
        Photo('motorcycle', motorcycle[122:378, 485:741], depth[122:378, 485:741]),
    ]
    return train, test


def _rng(seed: int, purpose: str, *index: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, image, variant)."""
    return np.random.default_rng((seed, zlib.crc32(purpose.encode()), *index))


def _hazy(photo: Photo, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """A hazy version of the photo, with its atmospheric light A and scattering coefficient beta."""
    depth = photo.depth if photo.depth is not None else synthetic.random_depth(photo.image.shape[:2], rng)
    airlight, beta = rng.uniform(0.75, 0.95), rng.uniform(0.6, 1.1)
    return synthetic.add_haze(photo.image, depth, beta, airlight), airlight, beta


def _write_pair(lq_path: Path, lq: np.ndarray, gt_path: Path, gt: np.ndarray) -> None:
    write_rgb(lq_path, lq)
    write_rgb(gt_path, gt)


def _write_train(root: Path, train: list[Photo], seed: int, variants: int = 2) -> None:
    for i, photo in enumerate(train):
        clean = photo.image
        write_rgb(root / 'Denoise' / f'{photo.name}.png', clean)
        for k in range(variants):
            n = i * variants + k + 1
            rainy = synthetic.add_rain(clean, _rng(seed, 'derain', i, k))
            _write_pair(root / f'Derain/rainy/rain-{n}.png', rainy, root / f'Derain/gt/norain-{n}.png', clean)
            dark = synthetic.darken(clean, _rng(seed, 'lowlight', i, k))
            _write_pair(root / f'lowlight/low/{n}.png', dark, root / f'lowlight/high/{n}.png', clean)
        for k in range(BLUR_VARIANTS):  # GoPro style: a folder per sequence
            blurred = synthetic.add_motion_blur(clean, _rng(seed, 'deblur', i, k))
            _write_pair(root / f'Deblur/blur/{photo.name}/{k + 1:06d}.png', blurred,
                        root / f'Deblur/sharp/{photo.name}/{k + 1:06d}.png', clean)
        for k in range(2):  # RESIDE OTS style: several hazy versions of one clean image, split into parts
            hazy, airlight, beta = _hazy(photo, _rng(seed, 'dehaze', i, k))
            write_rgb(root / f'Dehaze/synthetic/part{k + 1}/{i + 1:04d}_{airlight:.2f}_{beta:.2f}.jpg', hazy)
        write_rgb(root / f'Dehaze/original/{i + 1:04d}.png', clean)
        single = synthetic.add_rain(clean, _rng(seed, 'single', i))
        _write_pair(root / f'single/degraded/{photo.name}.png', single, root / f'single/target/{photo.name}.png', clean)


def _mixed(photo: Photo, i: int, seed: int) -> tuple[str, np.ndarray]:
    """Two degradations: one of haze, rain, low light and blur (in turn), then sigma-15 noise; with a name
    that says which."""
    rng = _rng(seed, 'mixed', i)
    first = MIXED_FIRST[i % len(MIXED_FIRST)]
    if first == 'haze':
        degraded = _hazy(photo, rng)[0]
    elif first == 'rain':
        degraded = synthetic.add_rain(photo.image, rng)
    elif first == 'lowlight':
        degraded = synthetic.darken(photo.image, rng)
    else:
        degraded = synthetic.add_motion_blur(photo.image, rng)
    return f'{photo.name}-{first}-noise{MIXED_SIGMA}', add_gaussian_noise(degraded, MIXED_SIGMA, rng)


def _write_test(root: Path, test: list[Photo], seed: int) -> None:
    for i, photo in enumerate(test):
        clean, n, name = photo.image, i + 1, photo.name
        write_rgb(root / f'denoise/demo/{name}.png', clean)
        rainy = synthetic.add_rain(clean, _rng(seed, 'test-derain', i))  # Rain100L names
        _write_pair(root / f'derain/demo/input/rain-{n:03d}.png', rainy,
                    root / f'derain/demo/target/norain-{n:03d}.png', clean)
        hazy, airlight, beta = _hazy(photo, _rng(seed, 'test-dehaze', i))  # SOTS names
        _write_pair(root / f'dehaze/input/{n:04d}_{airlight:.2f}_{beta:.2f}.jpg', hazy,
                    root / f'dehaze/target/{n:04d}.png', clean)
        blurred = synthetic.add_motion_blur(clean, _rng(seed, 'test-deblur', i))
        _write_pair(root / f'deblur/input/{name}.png', blurred, root / f'deblur/target/{name}.png', clean)
        dark = synthetic.darken(clean, _rng(seed, 'test-lowlight', i))
        _write_pair(root / f'lowlight/low/{n}.png', dark, root / f'lowlight/high/{n}.png', clean)
        mixed_name, mixed = _mixed(photo, i, seed)
        _write_pair(root / f'mixed/input/{mixed_name}.png', mixed, root / f'mixed/target/{mixed_name}.png', clean)


def measure(test_root: Path) -> dict[str, float]:
    """Mean input PSNR (dB, RGB, data range 255, skimage) of every test set below `test_root`, keyed by its
    degradation token (`denoise_25`, `derain`, ...) or task name (`mixed`), read through `data.test_sets`."""
    sets, _ = find_test_sets(test_root)
    out = {}
    for test_set in sets:
        key = f'denoise_{test_set.sigma}' if test_set.task == 'denoise' else test_set.task
        values = [peak_signal_noise_ratio(gt, lq, data_range=255)
                  for lq, gt in map(test_set.images, range(len(test_set)))]
        out[key] = float(np.mean(values))
    return out


def _manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _is_current(manifest: dict | None, seed: int) -> bool:
    return manifest is not None and manifest.get('version') == DEMO_VERSION and manifest.get('seed') == seed


def _is_older(manifest: dict | None, seed: int) -> bool:
    """A demo set this builder wrote, of another version or seed: replacing it loses nothing."""
    return manifest is not None and not _is_current(manifest, seed)


def build_demo(root: str | Path = 'data/demo', seed: int = 0, force: bool = False) -> dict[str, float]:
    """Write the demo set to `root` (unless an up-to-date one with this seed is there) and return the mean
    input PSNR of its test sets (`measure`).

    Raises:
        FileExistsError: when `root` exists but is not a demo set of this version and seed, and not `force`.
    """
    root = Path(root)
    manifest = _manifest(root)
    if not force and _is_current(manifest, seed):
        return manifest['psnr']
    if root.exists() and not force:
        raise FileExistsError(f'{root} exists and is not a demo set of version {DEMO_VERSION} with seed {seed}; '
                              'pass --force (force=True) to replace it')
    staging = root.parent / f'.{root.name}.building-{os.getpid()}'  # one per process: ranks may race here
    shutil.rmtree(staging, ignore_errors=True)
    train, test = photos()
    _write_train(staging / 'Train', train, seed)
    _write_test(staging / 'Test', test, seed)
    psnr = measure(staging / 'Test')
    (staging / MANIFEST).write_text(json.dumps({'version': DEMO_VERSION, 'seed': seed, 'psnr': psnr}, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    try:
        staging.rename(root)
    except OSError:
        if not _is_current(_manifest(root), seed):  # else another process has just put the same set there
            raise
        shutil.rmtree(staging)
    return psnr


def ensure_demo(root: str | Path = 'data/demo', seed: int = 0) -> tuple[Path, Path]:
    """The demo's `(train_root, test_root)`, building it first where it is missing or an older version."""
    root = Path(root)
    build_demo(root, seed, force=_is_older(_manifest(root), seed))
    return root / 'Train', root / 'Test'


def report(psnr: dict[str, float]) -> str:
    """The PSNR figures as a table, each beside the real benchmark's range where there is one."""
    lines = ['Demo test set, mean input PSNR (RGB, data range 255):']
    for key, value in psnr.items():
        low, high, what = PSNR_TARGETS.get(key, (None, None, ''))
        target = f'  target {low:g}-{high:g} dB ({what})' if what else ''
        lines.append(f'  {key:<11} {value:6.2f} dB{target}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='data/demo', help='where to write Train/ and Test/')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true', help='rebuild even if the demo set exists')
    args = parser.parse_args(argv)
    manifest = _manifest(Path(args.root))
    stale = _is_older(manifest, args.seed)
    if stale:
        print(f'{args.root} holds a demo set of version {manifest.get("version")}, seed {manifest.get("seed")}: '
              f'rebuilding it as version {DEMO_VERSION}, seed {args.seed}')
    try:
        psnr = build_demo(args.root, args.seed, args.force or stale)
    except FileExistsError as error:
        parser.error(str(error))
    print(f'Demo data set in {args.root}/Train and {args.root}/Test')
    print(report(psnr))


if __name__ == '__main__':
    main()
