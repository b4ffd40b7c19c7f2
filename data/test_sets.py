"""The test sets: full-size degraded/clean pairs found below a test root (`data.layouts.TEST_LAYOUT`).

Each set serves its pairs under one size-and-noise protocol (`PROTOCOLS`):

- `pad` (the default): every image at its full size (the network pads and crops back); a denoising set's
  noisy images come from `data.noise.test_noise`, seeded afresh for every image (seed 1850), so an
  image's noise is the same whatever subset or order evaluates it.
- `official`: what the official testers feed the network. Denoising is the official `tester_noise.py`:
  `np.random.seed(1850)` once per noise level, the clean images in sorted path order, one noise stream across
  them (`data.noise.OfficialNoise`), then the first row and the first column dropped when a side is not a multiple of 4
  (BSD68's 481 x 321 becomes 480 x 320). Every other set is trimmed at the bottom and right to a multiple of 8.

Every other set pairs its files by name (`data.layouts.pair_by_name`).
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from data.image_io import read_rgb, to_tensor
from data.layouts import TEST_LAYOUT, DataLayoutError, Pair, require_complete, scan_test_task
from data.noise import OfficialNoise, test_noise

TEST_TASKS = ('denoise', 'derain', 'dehaze', 'deblur', 'lowlight')
PROTOCOLS = ('pad', 'official')
OFFICIAL_MULTIPLE = 8  # the official tester's size rule for the sets other than denoising


def set_label(task: str, name: str, sigma: float | None) -> str:
    """A test set's one name, in output folders, logs, TensorBoard tags and tables: `task/name`, and `_sigma25`
    for a noise level (`denoise/bsd68_sigma25`, `derain/Rain100L`, `dehaze/dehaze`)."""
    return f'{task}/{name}' + ('' if sigma is None else f'_sigma{sigma:g}')


def trim_to_multiple(image: np.ndarray, multiple: int = OFFICIAL_MULTIPLE) -> np.ndarray:
    """Drops the bottom rows and right columns of an H x W x C array beyond a multiple of `multiple`."""
    h, w = image.shape[:2]
    if h < multiple or w < multiple:
        raise ValueError(f'a {h}x{w} image is smaller than {multiple} pixels on a side; --protocol official '
                         'cannot trim it (use --protocol pad)')
    return image[: h - h % multiple, : w - w % multiple]


def trim_first_row_and_column(image: np.ndarray) -> np.ndarray:
    """The official denoise tester's rule: where a side is not a multiple of 4, the first row and the first
    column go (both, whichever side it is)."""
    h, w = image.shape[:2]
    return image[1:, 1:] if h % 4 or w % 4 else image


class TestSet:
    """One test set, a map-style dataset (`torch.utils.data.DataLoader` takes it): items `{'lq', 'gt'}` (float32
    3 x H x W in [0, 1], full size), `'task'` (the task name) and `'name'` (the image's file stem, prefixed by its
    subfolders where the set has any).

    Args:
        task: the task folder it was found in (`denoise`, `derain`, ..., or any other name such as `mixed`).
        name: the set's name (`bsd68`, `Rain100L`; the task name where the task folder holds the pair itself).
        pairs: the image pairs; `lq` None means noise is added at `sigma` (per the protocol).
        sigma: noise level of a denoising set, else None.
        protocol: one of `PROTOCOLS` (module docstring): what `images` returns.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, task: str, name: str, pairs: Sequence[Pair], sigma: float | None = None,
                 protocol: str = 'pad') -> None:
        if (task == 'denoise') != (sigma is not None):
            raise ValueError(f'TestSet({task}/{name}): a sigma is needed for, and only for, the denoise task')
        if protocol not in PROTOCOLS:
            raise ValueError(f'unknown protocol {protocol!r}; use one of {", ".join(PROTOCOLS)}')
        self.task, self.name, self.pairs, self.sigma, self.protocol = task, name, tuple(pairs), sigma, protocol
        self._official_noise = (OfficialNoise([pair.gt for pair in self.pairs], sigma)
                                if protocol == 'official' and sigma is not None else None)

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The degraded and clean image of pair `index` as uint8 H x W x 3 RGB arrays, as the protocol feeds
        them to the network (trimmed under `official`)."""
        pair = self.pairs[index]
        gt = read_rgb(pair.gt)
        if pair.lq is not None:
            lq = read_rgb(pair.lq)
        elif self._official_noise is not None:
            lq = self._official_noise.noisy(index, gt)
        else:
            lq = test_noise(gt, self.sigma)
        if lq.shape != gt.shape:
            raise DataLayoutError(f'{pair.lq} {lq.shape[:2]} and {pair.gt} {gt.shape[:2]} differ in size; '
                                  'fix the pair (python -m data.check lists every such pair)')
        if self.protocol == 'official':
            trim = trim_first_row_and_column if self._official_noise is not None else trim_to_multiple
            lq, gt = trim(lq), trim(gt)
        return lq, gt

    def __getitem__(self, index: int) -> dict:
        lq, gt = self.images(index)
        return {'lq': to_tensor(lq), 'gt': to_tensor(gt), 'task': self.task, 'name': self.pairs[index].name}


def _expected(task: str) -> str:
    """The line of TEST_LAYOUT that describes `task`."""
    lines = [line.strip() for line in TEST_LAYOUT.splitlines() if line.strip().startswith(f'{task}/')]
    return lines[0] if lines else f'{task}/{{input,target}}'


def all_test_tasks(test_root: Path) -> list[str]:
    """`TEST_TASKS`, then every other folder of the test root (sorted)."""
    others = sorted(p.name for p in test_root.iterdir() if p.is_dir() and not p.name.startswith('.'))
    return list(dict.fromkeys([*TEST_TASKS, *others]))


def find_test_sets(test_root: str | Path, tasks: Iterable[str] | None = None, sigmas: Sequence[float] = (15, 25, 50),
                   protocol: str = 'pad') -> tuple[list[TestSet], list[str]]:
    """The test sets of `tasks` below `test_root` (one per noise level for denoising sets), and one message
    per task that has no folder there.

    Args:
        test_root: the test root (default layout in `data.layouts.TEST_LAYOUT`).
        tasks: task folders to look for; None means `TEST_TASKS` and every other folder of the root.
        sigmas: the noise levels of the denoising sets.
        protocol: the sets' protocol (`PROTOCOLS`).

    Raises:
        DataLayoutError: when the root is missing or empty, a task folder holds no test layout, or a set's
            files do not pair up.
    """
    root = Path(test_root)
    if not root.is_dir() or not any(root.iterdir()):
        state = 'is empty' if root.is_dir() else 'does not exist'
        raise DataLayoutError(f'test root {root} {state}; expected this layout below it:\n{TEST_LAYOUT}')
    sets, missing = [], []
    for task in all_test_tasks(root) if tasks is None else tasks:
        found = scan_test_task(root, task)
        if not found:
            missing.append(f'{task}: no test set at {root / task} (expected {_expected(task)})')
        for entry in found:
            pairs = require_complete(entry.pairing, entry.lq_dir, entry.gt_dir)
            if entry.lq_dir is None:
                sets.extend(TestSet(task, entry.name, pairs, sigma, protocol) for sigma in sigmas)
            else:
                sets.append(TestSet(task, entry.name, pairs, protocol=protocol))
    return sets, missing
