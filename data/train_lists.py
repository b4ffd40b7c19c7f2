"""Training lists: the files of a task folder that the paper trains on (`trainer.py --data_lists`).

The official loader does not train on every file of its data folders: for denoising, deraining and dehazing it
keeps only the images named in three lists, copied in `data/lists/` (its README says what each holds).
Denoising names are file names, looked for anywhere below the task folder; deraining and dehazing names are
degraded files' paths relative to the task folder (`rainy/rain-1.png`, `synthetic/part1/0025_0.8_0.04.jpg`).
Deblurring, low light and `single` have no list and train on every pair of their folders.

Nothing is dropped silently: `ListMatch` counts the listed names with no file on disk and the files on disk
that the list leaves out, and says which; the trainer prints it at start and `python -m data.check` reports it.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from data.layouts import TRAIN_LAYOUT, TRAIN_LAYOUTS, DataLayoutError, Pair, require_images, train_pairs
from data.tasks import train_task

OFFICIAL_LISTS = Path(__file__).resolve().parent / 'lists'
LISTS: dict[str, str] = {  # training-root key -> its list, relative to a lists folder
    'denoise': 'noisy/denoise.txt',
    'derain': 'rainy/rainTrain.txt',
    'dehaze': 'hazy/hazy_outside.txt',
}
BY_NAME = frozenset({'denoise'})  # tasks whose list holds bare file names; the others hold relative paths
_SHOWN = 5  # names quoted in a report; the rest are counted


def read_list(path: str | Path) -> tuple[str, ...]:
    """The names of a list file, one a line, in order; blank lines and surrounding spaces are ignored."""
    names = (line.strip() for line in Path(path).read_text(encoding='utf-8').splitlines())
    return tuple(dict.fromkeys(name for name in names if name))


def list_path(spec: str, task: str) -> Path | None:
    """The list `--data_lists spec` gives `task` (a training-root key): None for `none` and for tasks without
    a list; under `official` the copy in `data/lists/`; under a folder DIR, `DIR/<LISTS[task]>`.

    Raises:
        ValueError: when that list file does not exist (a folder missing one list is an error, not a quiet
            fall-back to every file of the task's folder).
    """
    if spec == 'none' or task not in LISTS:
        return None
    folder = OFFICIAL_LISTS if spec == 'official' else Path(spec)
    path = folder / LISTS[task]
    if not path.is_file():
        what = 'no such folder' if not folder.is_dir() else f'{path} does not exist'
        raise ValueError(f'--data_lists {spec}: {what}, and {task} is trained from a list; give a folder laid out '
                         f'as data/lists ({", ".join(LISTS.values())}; the official lists are there), '
                         '`official`, or `none` to train on every file of the task folders')
    return path


def list_paths(spec: str, de_types: Iterable[str]) -> dict[str, Path]:
    """The list of each training task of the `--de_type` tokens that `--data_lists spec` gives one (`list_path`).

    Raises:
        ValueError: as `list_path`.
    """
    tasks = dict.fromkeys(train_task(token) for token in de_types)
    return {task: path for task in tasks if (path := list_path(spec, task)) is not None}


def _shown(names: Iterable[str], count: int) -> str:
    first = list(islice(names, _SHOWN))
    return ', '.join(first) + (f' ... and {count - len(first)} more' if count > len(first) else '')


@dataclass(frozen=True)
class ListMatch:
    """A list matched against one task folder: the files it keeps, its names with no file, the files it leaves."""

    task: str
    list_file: Path
    folder: Path  # the task folder
    listed: int
    kept: tuple[Path, ...]
    missing: tuple[str, ...]  # listed names with no file below `folder`
    unlisted: tuple[Path, ...]  # files below `folder` that the list does not name (not trained)

    @property
    def how(self) -> str:
        return 'by file name, anywhere below it' if self.task in BY_NAME else 'by the path relative to it'

    @property
    def summary(self) -> str:
        return (f'{len(self.kept)} of the {self.listed} names of {self.list_file} found below {self.folder} '
                f'(matched {self.how})')

    @property
    def notes(self) -> list[str]:
        """One line each for the missing names and the unlisted files; empty when list and folder agree."""
        lines = []
        if self.missing:
            hint = (' (the list names BSD400 images a<id>.jpg, e.g. a247012.jpg, and WED images NNNNN.bmp)'
                    if self.task == 'denoise' else '')
            lines.append(f'{len(self.missing)} listed name(s) have no file below {self.folder}, so training sees '
                         f'fewer images than the paper\'s: {_shown(self.missing, len(self.missing))}. Give your '
                         f'files the listed names{hint}, or pass --data_lists none to train on every image in the '
                         'folder')
        if self.unlisted:
            rel = (p.relative_to(self.folder).as_posix() for p in self.unlisted)
            lines.append(f'{len(self.unlisted)} file(s) below {self.folder} are not in the list and are not trained '
                         f'on (--data_lists none trains on them): {_shown(rel, len(self.unlisted))}')
        missing = set(self.missing) if self.task == 'denoise' else set()
        renamed = [p.name for p in self.unlisted if f'a{p.name}' in missing]  # BSD400 without the list's prefix
        if renamed:
            lines.append(f'{len(renamed)} of these unlisted files are listed with an `a` in front (BSD400: '
                         f'{renamed[0]} is listed as a{renamed[0]}): rename them to train on them')
        return lines

    @property
    def nothing_kept(self) -> str:
        """The error when no listed name is on disk."""
        return (f'none of the {self.listed} names of {self.list_file} is below {self.folder} (matched {self.how}); '
                f'{len(self.unlisted)} image(s) there are not in the list. Put the listed files there, or pass '
                '--data_lists none to train on every image in the folder')

    def report(self) -> str:
        """The summary and the notes, one line each."""
        return '\n'.join([f'{self.task}: {self.summary}', *(f'  {note}' for note in self.notes)])


def match_list(task: str, root: str | Path, list_file: str | Path) -> ListMatch:
    """Match `list_file` against the degraded images of task folder `root` (its clean images, for denoising).

    Raises:
        DataLayoutError: when the folder is missing or holds no image.
    """
    root, list_file = Path(root), Path(list_file)
    names = read_list(list_file)
    wanted = set(names)
    found, kept, unlisted = set(), [], []
    sub = TRAIN_LAYOUTS[task].lq_dir or '.'
    skip = len(str(root / sub)) + 1  # the images' paths start with their folder's: slicing is faster than pathlib
    for path in require_images(root / sub, TRAIN_LAYOUT):
        key = path.name if task in BY_NAME else f'{sub}/{str(path)[skip:].replace(os.sep, "/")}'
        if key in wanted:
            found.add(key)
            kept.append(path)
        else:
            unlisted.append(path)
    return ListMatch(task, list_file, root, len(names), tuple(kept), tuple(n for n in names if n not in found),
                     tuple(unlisted))


def listed_pairs(task: str, root: str | Path, list_file: str | Path) -> tuple[tuple[Pair, ...], ListMatch]:
    """The complete pairs of the files `list_file` keeps in task folder `root`, and the match.

    Raises:
        DataLayoutError: when no listed file is there, and as `data.layouts.train_pairs` for the kept files.
    """
    match = match_list(task, root, list_file)
    if not match.kept:
        raise DataLayoutError(f'{task}: {match.nothing_kept}')
    return train_pairs(task, root, match.kept), match
