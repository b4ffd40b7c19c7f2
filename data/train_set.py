"""The training set: aligned random patches of every `--de_type` token's pairs, and an independent source of
clean patches for unpaired training.

One epoch is the concatenation of each token's list repeated `replication[token]` times (the DataLoader's
sampler shuffles it). Each sample is a random `patch_size` crop, taken at the same offset in the degraded and
the clean image, and the same one of the 8 dihedral transforms applied to both; noise tokens crop a clean
image and add noise to the patch. All randomness of sample `index` comes from `(seed, epoch, index)`, so the
same index yields the same patch in any DataLoader worker and on any DDP rank. The epoch lives in shared
memory: `set_epoch` in the main process reaches persistent workers too.

The folders are those of `data.layouts.TRAIN_LAYOUT`; `data.layouts.default_train_roots` maps a base folder to
them.
A task given a training list (`data.train_lists`) keeps only the files its list names.
"""

import bisect
import logging
import multiprocessing
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, get_worker_info

from data.image_io import ImageReadError, read_rgb, to_tensor
from data.layouts import DataLayoutError, Pair, train_pairs
from data.noise import add_gaussian_noise
from data.tasks import DE_TYPES, DEFAULT_REPLICATION, NOISE_SIGMAS, parse_de_type, train_task
from data.train_lists import ListMatch, listed_pairs

log = logging.getLogger(__name__)

_PAIRED_STREAM, _CLEAN_STREAM = 0, 1  # keep the clean source's randomness apart from the paired set's
_COUNT_SLOTS = 65  # skip counters: the main process and up to 64 DataLoader workers


def random_crop(images: list[np.ndarray], patch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random `patch_size` square of each (equally sized) image; smaller images are first
    reflect-padded at the bottom and right."""
    h, w = images[0].shape[:2]
    pad = ((0, max(patch_size - h, 0)), (0, max(patch_size - w, 0)), (0, 0))
    if pad[0][1] or pad[1][1]:
        images = [np.pad(image, pad, mode='reflect') for image in images]
        h, w = images[0].shape[:2]
    top = int(rng.integers(h - patch_size + 1))
    left = int(rng.integers(w - patch_size + 1))
    return [image[top:top + patch_size, left:left + patch_size] for image in images]


def dihedral(image: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 symmetries of the square: `mode % 4` quarter turns, then a left-right flip if mode >= 4."""
    image = np.rot90(image, k=mode % 4)
    return np.fliplr(image) if mode >= 4 else image


def hold_out(pairs: tuple[Pair, ...], count: int, seed: int, task: str) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """(training pairs, validation pairs): `count` distinct clean images of `task`, chosen by `seed`, leave training
    with every pair they are in (a hazy scene's other versions would leak it); validation keeps the first pair of
    each, in the list's order.

    Raises:
        DataLayoutError: when the task has no more than `count` clean images.
    """
    cleans = list(dict.fromkeys(pair.gt for pair in pairs))
    if count >= len(cleans):
        raise DataLayoutError(f'--val_split {count}: task {task} has {len(cleans)} clean training images, so holding '
                              f'{count} out would leave {max(len(cleans) - count, 0)} to train on; lower --val_split')
    chosen = {cleans[i] for i in np.random.default_rng((seed, zlib.crc32(task.encode()))).choice(
        len(cleans), count, replace=False)}
    first: dict[Path, Pair] = {}
    for pair in pairs:
        if pair.gt in chosen:
            first.setdefault(pair.gt, pair)
    return tuple(pair for pair in pairs if pair.gt not in chosen), tuple(first.values())


@dataclass(frozen=True)
class _Source:
    """One token's pairs, repeated `replication` times per epoch."""

    token: str
    pairs: tuple[Pair, ...]
    replication: int

    @property
    def size(self) -> int:
        return len(self.pairs) * self.replication


class _PatchSet(Dataset):
    """What both training datasets share: the per-token sources and the index layout, seeding, reading
    (cached or not) and skipping of unreadable files."""

    stream = _PAIRED_STREAM

    def __init__(self, roots: Mapping[str, str | Path], de_types: Iterable[str], patch_size: int,
                 replication: Mapping[str, int] | None = None, seed: int = 0, cache: bool = False,
                 skip_unreadable: bool = False, val_split: int = 0,
                 lists: Mapping[str, str | Path] | None = None) -> None:
        if patch_size < 1:
            raise ValueError(f'patch_size must be >= 1, got {patch_size}')
        self.tokens = parse_de_type(list(de_types))
        unknown = sorted(set(replication or {}) - set(DE_TYPES))
        if unknown:
            raise ValueError(f'replication: unknown token(s) {unknown}; valid tokens are: {" ".join(DE_TYPES)}')
        counts = {**DEFAULT_REPLICATION, **(replication or {})}
        pairs: dict[str, tuple[Pair, ...]] = {}
        self.held_out: dict[str, tuple[Pair, ...]] = {}  # task -> its validation pairs (`val_split`)
        self.list_matches: dict[str, ListMatch] = {}  # task -> what its training list kept and left (`lists`)
        for task in dict.fromkeys(train_task(t) for t in self.tokens):
            if task not in roots:
                raise DataLayoutError(f'no training root for task {task!r} (needed by --de_type); give its folder')
            if task in (lists or {}):
                pairs[task], self.list_matches[task] = listed_pairs(task, roots[task], lists[task])
            else:
                pairs[task] = train_pairs(task, roots[task])
            if val_split:
                pairs[task], self.held_out[task] = hold_out(pairs[task], val_split, seed, task)
        self.sources = [_Source(t, pairs[train_task(t)], counts[t]) for t in self.tokens]
        self._ends = np.cumsum([s.size for s in self.sources]).tolist()
        self.patch_size = patch_size
        self.seed = seed
        self.skip_unreadable = skip_unreadable
        # Shared memory, so that the main process's set_epoch reaches (persistent) DataLoader workers and the
        # workers' skip counts reach the main process. Lock-free (a lock made here could not be shared with
        # workers of another start method): each process counts in its own slot.
        self._epoch = multiprocessing.RawValue('q', 0)
        self._skipped = multiprocessing.RawArray('q', _COUNT_SLOTS)
        self._reported: set[str] = set()
        self._cache: dict[Path, np.ndarray | ImageReadError] = {}
        if cache:
            for path in dict.fromkeys(p for s in self.sources for pair in s.pairs for p in self._paths(pair)):
                try:
                    self._cache[path] = read_rgb(path)
                except ImageReadError as err:
                    if not skip_unreadable:
                        raise
                    self._cache[path] = err

    @staticmethod
    def _paths(pair: Pair) -> tuple[Path, ...]:
        """The files a sample of `pair` reads."""
        return tuple(p for p in (pair.lq, pair.gt) if p is not None)

    def __len__(self) -> int:
        return self._ends[-1]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random patches `__getitem__` returns (call it before each epoch)."""
        self._epoch.value = epoch

    @property
    def epoch(self) -> int:
        return self._epoch.value

    @property
    def skipped_unreadable(self) -> int:
        """How many samples were replaced because a file was unreadable, in this process and its DataLoader
        workers."""
        return sum(self._skipped)

    def _locate(self, index: int) -> tuple[_Source, int, np.random.Generator]:
        """Sample `index`'s token source, its pair within the token's list, and its random generator."""
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} samples')
        k = bisect.bisect_right(self._ends, index)
        source = self.sources[k]
        position = (index - (self._ends[k - 1] if k else 0)) % len(source.pairs)
        return source, position, np.random.default_rng((self.seed, self.stream, self.epoch, index))

    def _read(self, pair: Pair) -> list[np.ndarray]:
        images = []
        for path in self._paths(pair):
            cached = self._cache.get(path)
            if isinstance(cached, ImageReadError):
                raise cached
            images.append(read_rgb(path) if cached is None else cached)
        return images

    def _skip(self, err: ImageReadError) -> None:
        if not self.skip_unreadable:
            raise ImageReadError(f'{err} (or pass skip_unreadable=True to skip such files)') from err
        if err.args[0] not in self._reported:
            self._reported.add(err.args[0])
            log.warning('skipping an unreadable image: %s', err)

    def _load(self, token: str, pairs: tuple[Pair, ...], position: int, rng: np.random.Generator
              ) -> tuple[Pair, list[np.ndarray]]:
        """`pairs[position]` and its decoded images; with `skip_unreadable`, an unreadable pair is replaced by
        the next readable one from a random place in the list (and counted)."""
        try:
            return pairs[position], self._read(pairs[position])
        except ImageReadError as err:
            self._skip(err)
        worker = get_worker_info()
        self._skipped[0 if worker is None else 1 + worker.id % (_COUNT_SLOTS - 1)] += 1
        start = int(rng.integers(len(pairs)))
        for k in range(len(pairs)):
            if (start + k) % len(pairs) == position:
                continue
            pair = pairs[(start + k) % len(pairs)]
            try:
                return pair, self._read(pair)
            except ImageReadError as err:
                self._skip(err)
        raise ImageReadError(f'--de_type {token}: none of its {len(pairs)} images is readable')


def _patches(images: list[np.ndarray], patch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """An aligned random crop of the images, with one random dihedral transform applied to all."""
    crops = random_crop(images, patch_size, rng)
    mode = int(rng.integers(8))
    return [dihedral(c, mode) for c in crops]


class TrainDataset(_PatchSet):
    """Paired training patches: items `{'lq', 'gt'}` (float32 3 x P x P in [0, 1]), `'task'` (the token's
    degradation id, `data.tasks.DE_TYPES`) and `'name'` (the degraded file's name below its folder).

    Args:
        roots: task folder per training task (`data.layouts.default_train_roots`); only those of `de_types` are read.
        de_types: `--de_type` tokens (`data.tasks.DE_TYPES`).
        patch_size: side of the square patches.
        replication: per-token repeat counts overriding `data.tasks.DEFAULT_REPLICATION`.
        seed: the base seed of every random choice.
        cache: decode every image once, up front, and keep it in memory (for small sets).
        skip_unreadable: replace samples whose file cannot be decoded (counted in `skipped_unreadable`)
            instead of raising.
        val_split: clean images per task held out of the set (`hold_out`); their pairs are in `held_out`.
        lists: training list per task (`data.train_lists.list_paths`): such a task trains on the listed files
            only (what the list kept and left is in `list_matches`); the others on every pair of their folder.
    """

    def __getitem__(self, index: int) -> dict:
        source, position, rng = self._locate(index)
        pair, images = self._load(source.token, source.pairs, position, rng)
        if len(images) == 2 and images[0].shape != images[1].shape:
            raise DataLayoutError(f'{pair.lq} {images[0].shape[:2]} and {pair.gt} {images[1].shape[:2]} differ '
                                  'in size; fix the pair (python -m data.check lists every such pair)')
        patches = _patches(images, self.patch_size, rng)
        if source.token in NOISE_SIGMAS:
            patches = [add_gaussian_noise(patches[0], NOISE_SIGMAS[source.token], rng), patches[0]]
        return {'lq': to_tensor(patches[0]), 'gt': to_tensor(patches[1]), 'task': DE_TYPES[source.token],
                'name': pair.name}


class CleanPatchSource(_PatchSet):
    """Clean patches for unpaired training (the critic's samples of the clean distribution): items `{'gt',
    'task', 'name'}` (`name`: the clean file's stem), with `TrainDataset`'s arguments.

    Its index layout is `TrainDataset`'s (same length, same token at each index), so that index `i` of both
    can be drawn together; but the image of sample `i` is a random choice among the token's distinct clean
    images (an OTS clean image once, not once per hazy version), seeded apart from the paired set: however
    the samplers are seeded, a clean patch is not its degraded partner's.
    """

    stream = _CLEAN_STREAM

    @staticmethod
    def _paths(pair: Pair) -> tuple[Path, ...]:
        return (pair.gt,)

    @cached_property
    def clean(self) -> dict[str, tuple[Pair, ...]]:
        """Each token's distinct clean images."""
        return {s.token: tuple({p.gt: Pair(None, p.gt, p.gt.stem) for p in s.pairs}.values()) for s in self.sources}

    def __getitem__(self, index: int) -> dict:
        source, _, rng = self._locate(index)
        clean = self.clean[source.token]
        item, images = self._load(source.token, clean, int(rng.integers(len(clean))), rng)
        patch = _patches(images, self.patch_size, rng)[0]
        return {'gt': to_tensor(patch), 'task': DE_TYPES[source.token], 'name': item.name}


class WithCleanPatches(Dataset):
    """Training samples plus `'clean'`: the clean-source patch of the same index (same task, unrelated image)."""

    def __init__(self, pairs: TrainDataset, clean: CleanPatchSource) -> None:
        self.pairs, self.clean = pairs, clean

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return {**self.pairs[index], 'clean': self.clean[index]['gt']}

    def set_epoch(self, epoch: int) -> None:
        self.pairs.set_epoch(epoch)
        self.clean.set_epoch(epoch)

    @property
    def held_out(self) -> dict[str, tuple[Pair, ...]]:
        return self.pairs.held_out

    @property
    def list_matches(self) -> dict[str, ListMatch]:
        return self.pairs.list_matches

    @property
    def skipped_unreadable(self) -> int:
        return self.pairs.skipped_unreadable + self.clean.skipped_unreadable
