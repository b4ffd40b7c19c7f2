"""The test sets: full-size degraded/clean pairs found below a test root (`data.layouts.TEST_LAYOUT`).

Denoising sets hold clean images only; their noisy versions come from `data.degradations.test_noise` (seed
1850 for every image, clipped and truncated to uint8), the one protocol shared by validation and `test.py`.
Every other set pairs its files by name (`data.layouts.pair_by_name`).
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from data.degradations import test_noise
from data.image_io import read_rgb, to_tensor
from data.layouts import TEST_LAYOUT, DataLayoutError, Pair, require_complete, scan_test_task
from data.tasks import DE_TYPES, NOISE_SIGMAS

TEST_TASKS = ('denoise', 'derain', 'dehaze', 'deblur', 'lowlight')
# pad: full-size outputs (the network pads and crops back); official: trimmed first, as the official tester
PROTOCOLS = ('pad', 'official')


class TestSet:
    """One test set, a map-style dataset (`torch.utils.data.DataLoader` takes it): items `{'lq', 'gt'}` (float32
    3 x H x W in [0, 1], full size), `'task'` (the task name) and `'name'` (the image's file stem, prefixed by its
    subfolders where the set has any).

    Args:
        task: the task folder it was found in (`denoise`, `derain`, ..., or any other name such as `mixed`).
        name: the set's name (`bsd68`, `Rain100L`; the task name where the task folder holds the pair itself).
        pairs: the image pairs; `lq` None means noise is added by `test_noise` at `sigma`.
        sigma: noise level of a denoising set, else None.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, task: str, name: str, pairs: Sequence[Pair], sigma: float | None = None) -> None:
        if (task == 'denoise') != (sigma is not None):
            raise ValueError(f'TestSet({task}/{name}): a sigma is needed for, and only for, the denoise task')
        self.task, self.name, self.pairs, self.sigma = task, name, tuple(pairs), sigma

    @property
    def task_id(self) -> int | None:
        """The degradation id (`data.tasks.DE_TYPES`) this set tests, or None where it maps to none (a noise
        level other than 15, 25, 50; a mixed or other set)."""
        if self.task == 'denoise':
            token = {sigma: token for token, sigma in NOISE_SIGMAS.items()}.get(self.sigma)  # 25.0 finds 25
            return None if token is None else DE_TYPES[token]
        return DE_TYPES.get(self.task)

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The degraded and clean image of pair `index` as uint8 H x W x 3 RGB arrays."""
        pair = self.pairs[index]
        gt = read_rgb(pair.gt)
        lq = test_noise(gt, self.sigma) if pair.lq is None else read_rgb(pair.lq)
        if lq.shape != gt.shape:
            raise DataLayoutError(f'{pair.lq} {lq.shape[:2]} and {pair.gt} {gt.shape[:2]} differ in size; '
                                  'fix the pair (python -m data.check lists every such pair)')
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


def find_test_sets(test_root: str | Path, tasks: Iterable[str] | None = None,
                   sigmas: Sequence[float] = (15, 25, 50)) -> tuple[list[TestSet], list[str]]:
    """The test sets of `tasks` below `test_root` (one per noise level for denoising sets), and one message
    per task that has no folder there.

    Args:
        test_root: the test root (default layout in `data.layouts.TEST_LAYOUT`).
        tasks: task folders to look for; None means `TEST_TASKS` and every other folder of the root.
        sigmas: the noise levels of the denoising sets.

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
                sets.extend(TestSet(task, entry.name, pairs, sigma) for sigma in sigmas)
            else:
                sets.append(TestSet(task, entry.name, pairs))
    return sets, missing
