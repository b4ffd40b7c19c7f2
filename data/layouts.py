"""Where the images live, and how degraded and clean files are paired.

The expected layouts are `TRAIN_LAYOUT` (default root `data/Train`; each task's folder can also be given on
its own, see `default_train_roots`) and `TEST_LAYOUT` (default root `data/Test`), just below.
A task folder may hold its pair of folders directly (`dehaze/{input,target}`) or one subfolder per set
(`derain/Rain100L/{input,target}`); `{low,high}` and `{input,target}` are accepted everywhere.

Pairing is by name, never by sorted order (sorted orders differ as soon as one file is missing). For a
degraded file at relative path `sub/stem.ext` the clean partner is the first of these that exists:
the same relative path; the same relative stem with any extension; `rain-N` -> `norain-N`; the stem
before its first underscore (RESIDE `0001_0.8_0.2` -> `0001`). Each is tried inside the same subfolder
first, then at the top of the clean folder (OTS keeps its hazy images in `partK/` and its clean ones flat).
Degraded files without a partner, and clean files without a degraded one, are errors that list them.
"""

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from data.image_io import list_images

SHARED_DATA_ENV = 'DARCOT_SHARED_DATA'


def shared_data() -> Path:
    """The real benchmark images kept beside the project (`../shared/data`: CBSD68, Rain12, Rain100H, SOTS, LOL),
    or the folder `DARCOT_SHARED_DATA` names. Nothing of it is part of the project; callers skip, saying so,
    where it is absent."""
    return Path(os.environ.get(SHARED_DATA_ENV, Path(__file__).resolve().parents[2] / 'shared' / 'data'))

TRAIN_LAYOUT = """\
    Denoise/                                clean images, subfolders allowed (BSD400, WED); noise is made
                                            on the fly
    Derain/rainy/rain-N.png             <-> Derain/gt/norain-N.png                 (Rain100L train)
    Dehaze/synthetic/[partK/]0001_*.jpg <-> Dehaze/original/0001.*                 (RESIDE OTS)
    Deblur/blur/<sequence>/000001.png   <-> Deblur/sharp/<sequence>/000001.png     (GoPro)
    lowlight/low/N.png                  <-> lowlight/high/N.png     (`low_light/` is accepted too)
    single/degraded/X.png               <-> single/target/X.png     (any single degradation)"""
TEST_LAYOUT = """\
    denoise/<set>/               clean images (bsd68, kodak24); noise from data.noise.test_noise
    derain/<set>/{input,target}  (Rain100L)
    dehaze/{input,target}        (SOTS outdoor: input 0001_0.8_0.2.jpg <-> target 0001.png)
    deblur/{input,target}        (GoPro)
    lowlight/{low,high}          (LOL)
    <name>/{input,target}        any other paired set, tested as task <name> (e.g. the demo's `mixed`)"""
PAIRED_DIRS = (('input', 'target'), ('low', 'high'))
_LISTED = 20  # files named in an error message; the rest are counted


def default_train_roots(base: str | Path = 'data/Train') -> dict[str, Path]:
    """The folder of each training task below `base` (`lowlight/`, or `low_light/` where only that exists)."""
    base = Path(base)
    lowlight = base / 'lowlight'
    if not lowlight.exists() and (base / 'low_light').exists():
        lowlight = base / 'low_light'
    return {'denoise': base / 'Denoise', 'derain': base / 'Derain', 'dehaze': base / 'Dehaze',
            'deblur': base / 'Deblur', 'lowlight': lowlight, 'single': base / 'single'}


class DataLayoutError(ValueError):
    """A data folder that is missing, empty, or whose degraded and clean files do not pair up."""


@dataclass(frozen=True)
class Pair:
    """One degraded/clean pair; `lq` is None where the degradation is synthesised (noise)."""

    lq: Path | None
    gt: Path
    name: str  # the degraded file's path below its folder, '/'-separated, without extension


@dataclass(frozen=True)
class Pairing:
    """What pairing two folders found: the pairs, and the files left over."""

    pairs: tuple[Pair, ...]
    unmatched_lq: tuple[Path, ...] = ()
    unmatched_gt: tuple[Path, ...] = ()
    ambiguous: tuple[str, ...] = ()

    def problems(self, lq_dir: Path | None, gt_dir: Path, allow_unused_gt: bool = False) -> list[str]:
        """One message per kind of leftover; empty when the pairing is complete."""
        out = list(self.ambiguous)
        if self.unmatched_lq:
            out.append(f'{len(self.unmatched_lq)} degraded file(s) in {lq_dir} have no clean partner in {gt_dir}: '
                       + _names(self.unmatched_lq))
        if self.unmatched_gt and not allow_unused_gt:
            out.append(f'{len(self.unmatched_gt)} clean file(s) in {gt_dir} have no degraded partner in {lq_dir}: '
                       + _names(self.unmatched_gt))
        return out


@dataclass(frozen=True)
class TrainLayout:
    """One training task's folders below its root; `lq_dir` None means clean images only."""

    lq_dir: str | None
    gt_dir: str
    # OTS ships clean images whose hazy versions live in parts a user may not have downloaded.
    allow_unused_gt: bool = False


TRAIN_LAYOUTS: dict[str, TrainLayout] = {
    'denoise': TrainLayout(None, '.'),
    'derain': TrainLayout('rainy', 'gt'),
    'dehaze': TrainLayout('synthetic', 'original', allow_unused_gt=True),
    'deblur': TrainLayout('blur', 'sharp'),
    'lowlight': TrainLayout('low', 'high'),
    'single': TrainLayout('degraded', 'target'),
}


@dataclass(frozen=True)
class FoundTestSet:
    """A test set found below a test root, before it is checked for completeness."""

    task: str
    name: str
    lq_dir: Path | None
    gt_dir: Path
    pairing: Pairing


def _names(paths: tuple[Path, ...]) -> str:
    shown = ', '.join(str(p) for p in paths[:_LISTED])
    return shown + (f' ... and {len(paths) - _LISTED} more' if len(paths) > _LISTED else '')


def _candidates(rel: PurePosixPath) -> Iterator[str]:
    """Clean-file keys a degraded file may pair with, best first (see the module docstring)."""
    parents = [rel.parent] if rel.parent == PurePosixPath('.') else [rel.parent, PurePosixPath('.')]
    for parent in parents:
        yield (parent / rel.name).as_posix()
        yield (parent / rel.stem).as_posix()
        if rel.stem.lower().startswith('rain'):
            yield (parent / f'no{rel.stem}').as_posix()
        if '_' in rel.stem:
            yield (parent / rel.stem.split('_', 1)[0]).as_posix()


def require_images(folder: Path, layout: str) -> list[Path]:
    """The images below `folder` (recursively).

    Raises:
        DataLayoutError: naming the folder and showing `layout`, when it is missing or holds no image.
    """
    if not folder.is_dir():
        raise DataLayoutError(f'{folder} does not exist; expected this layout:\n{layout}')
    images = list_images(folder, recursive=True)
    if not images:
        raise DataLayoutError(f'{folder} holds no image; expected this layout:\n{layout}')
    return images


def pair_by_name(lq_dir: Path, gt_dir: Path, layout: str, lq_files: Collection[Path] | None = None) -> Pairing:
    """Pair the images below `lq_dir` (or only `lq_files`, some of them) with those below `gt_dir` by name (see
    the module docstring).

    Raises:
        DataLayoutError: when either folder is missing or empty; leftovers are reported in the result.
    """
    lq_files = require_images(lq_dir, layout) if lq_files is None else sorted(lq_files)
    gt_files = require_images(gt_dir, layout)
    index: dict[str, list[Path]] = {}
    for path in gt_files:
        rel = PurePosixPath(path.relative_to(gt_dir).as_posix())
        index.setdefault(rel.as_posix(), []).append(path)
        index.setdefault(rel.with_suffix('').as_posix(), []).append(path)
    pairs, unmatched, ambiguous, used = [], [], [], set()
    for path in lq_files:
        rel = PurePosixPath(path.relative_to(lq_dir).as_posix())
        match = next((index[k] for k in _candidates(rel) if k in index), None)
        if match is None:
            unmatched.append(path)
        elif len(match) > 1:
            ambiguous.append(f'{path} could pair with several clean files: {", ".join(map(str, match))}')
        else:
            pairs.append(Pair(path, match[0], rel.with_suffix('').as_posix()))
            used.add(match[0])
    pairs, clashes = _unique_names(pairs)
    return Pairing(pairs, tuple(unmatched), tuple(p for p in gt_files if p not in used), (*ambiguous, *clashes))


def clean_images(folder: Path, layout: str, images: Collection[Path] | None = None) -> Pairing:
    """Clean images only (noise is added on the fly): every image below `folder` (or only `images`, some of
    them) is a pair with `lq` None."""
    images = require_images(folder, layout) if images is None else sorted(images)
    pairs, clashes = _unique_names([Pair(None, p, p.relative_to(folder).with_suffix('').as_posix()) for p in images])
    return Pairing(pairs, ambiguous=clashes)


def _unique_names(pairs: list[Pair]) -> tuple[tuple[Pair, ...], tuple[str, ...]]:
    """The pairs whose name no other pair has, and one message per name shared by several files (`x.png` and
    `x.jpg`): their outputs and metrics rows would overwrite each other."""
    by_name: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_name.setdefault(pair.name, []).append(pair)
    clashes = tuple(f'{", ".join(str(p.lq or p.gt) for p in group)} share the name {name!r}, so their results '
                    'would overwrite each other; keep one of them' for name, group in by_name.items() if len(group) > 1)
    return tuple(p for p in pairs if len(by_name[p.name]) == 1), clashes


def require_complete(pairing: Pairing, lq_dir: Path | None, gt_dir: Path, allow_unused_gt: bool = False
                     ) -> tuple[Pair, ...]:
    """The pairs, or a DataLayoutError listing every leftover file."""
    problems = pairing.problems(lq_dir, gt_dir, allow_unused_gt)
    if problems:
        raise DataLayoutError('\n'.join(problems) + '\nPairing is by name: rename or remove these files.')
    return pairing.pairs


def scan_train(task: str, root: str | Path, only: Collection[Path] | None = None) -> Pairing:
    """Pair one training task's folders below `root` (keys of `TRAIN_LAYOUTS`); leftovers are reported.

    `only` restricts the scan to these degraded files (clean files, for denoising), e.g. those a training list
    names (`data.train_lists`); the clean files they leave unused are then no leftovers.

    Raises:
        DataLayoutError: when a folder is missing or empty.
    """
    layout = TRAIN_LAYOUTS[task]
    root = Path(root)
    if layout.lq_dir is None:
        return clean_images(root, TRAIN_LAYOUT, only)
    pairing = pair_by_name(root / layout.lq_dir, root / layout.gt_dir, TRAIN_LAYOUT, only)
    return pairing if only is None else replace(pairing, unmatched_gt=())


def train_pairs(task: str, root: str | Path, only: Collection[Path] | None = None) -> tuple[Pair, ...]:
    """The complete pairs of one training task (of the files `only` names, see `scan_train`).

    Raises:
        DataLayoutError: for a missing or empty folder and for files that do not pair up.
    """
    layout = TRAIN_LAYOUTS[task]
    root = Path(root)
    lq_dir = None if layout.lq_dir is None else root / layout.lq_dir
    return require_complete(scan_train(task, root, only), lq_dir, root / layout.gt_dir, layout.allow_unused_gt)


def _pair_dirs(folder: Path) -> tuple[Path, Path] | None:
    for lq_name, gt_name in PAIRED_DIRS:
        if (folder / lq_name).is_dir() and (folder / gt_name).is_dir():
            return folder / lq_name, folder / gt_name
    return None


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))


def scan_test_task(test_root: str | Path, task: str) -> list[FoundTestSet]:
    """The sets of one task below a test root: none where `test_root/task` is absent or holds no image.

    Raises:
        DataLayoutError: when the task folder holds something that is not a test layout, or a set's folder
            is empty.
    """
    folder = Path(test_root) / task
    if not folder.is_dir() or not list_images(folder, recursive=True):
        return []
    if task == 'denoise':
        sets = [(sub.name, None, sub) for sub in _subfolders(folder)]
    elif (dirs := _pair_dirs(folder)) is not None:
        sets = [(task, *dirs)]
    else:
        sets = [(sub.name, *dirs) for sub in _subfolders(folder) if (dirs := _pair_dirs(sub)) is not None]
    if not sets:
        raise DataLayoutError(f'{folder} holds no test set; expected this layout:\n{TEST_LAYOUT}')
    return [FoundTestSet(task, name, lq_dir, gt_dir,
                         clean_images(gt_dir, TEST_LAYOUT) if lq_dir is None
                         else pair_by_name(lq_dir, gt_dir, TEST_LAYOUT))
            for name, lq_dir, gt_dir in sets]
