"""Check a data tree: `python -m data.check [--train_root data/Train] [--test_root data/Test] [--no_decode]
[--data_lists official|none|DIR]`.

Prints, per task, what it found (pairs, images, sizes), what is unmatched, unreadable or paired with an image
of another size, and which `--de_type` sets (3-task, 5-task) the tree can train and test. Tasks with a training
list (`data.train_lists`, as `trainer.py --data_lists`) are checked on the files their list keeps, and NOTE
lines count the listed names with no file and the files the list leaves out. The first thing to run after
downloading the paper's data sets. Exits with status 1 when it found a problem or no data at all.
"""

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.image_io import ImageReadError, read_rgb
from data.layouts import (
    TEST_LAYOUT,
    TRAIN_LAYOUT,
    TRAIN_LAYOUTS,
    DataLayoutError,
    Pair,
    Pairing,
    default_train_roots,
    scan_test_task,
    scan_train,
)
from data.tasks import FIVE_TASK, THREE_TASK, train_task
from data.test_sets import all_test_tasks
from data.train_lists import list_path, match_list

GROUPS = {'3-task': THREE_TASK, '5-task': FIVE_TASK}


@dataclass
class TaskReport:
    """What one task (or test set) holds: a one-line summary and its problems."""

    task: str
    label: str
    summary: str = ''
    problems: list[str] = field(default_factory=list)
    found: bool = False
    notes: list[str] = field(default_factory=list)  # what a training list and the folder disagree on

    @property
    def usable(self) -> bool:
        return self.found and not self.problems


def _sizes(pairs: Sequence[Pair], decode: bool, desc: str) -> tuple[str, list[str]]:
    """A summary of the image sizes (width x height), and the unreadable files and mismatched pairs."""
    if not decode:
        return '', []
    known: dict[Path, tuple[int, int] | None] = {}  # a clean image may serve several pairs (OTS)
    problems = []
    for pair in tqdm(pairs, desc=desc, leave=False, disable=len(pairs) < 50):
        for path in (pair.lq, pair.gt):
            if path is not None and path not in known:
                try:
                    known[path] = read_rgb(path).shape[:2]
                except ImageReadError as err:
                    known[path] = None
                    problems.append(f'unreadable: {err}')
        shapes = {p: known[p] for p in (pair.lq, pair.gt) if p is not None and known[p] is not None}
        if len(set(shapes.values())) > 1:
            problems.append('sizes differ: ' + ', '.join(f'{p} {w}x{h}' for p, (h, w) in shapes.items()))
    sizes = {shape for shape in known.values() if shape is not None}
    if not sizes:
        return '', problems
    ordered = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    (h0, w0), (h1, w1) = ordered[0], ordered[-1]
    spread = f'{w0}x{h0}' if len(ordered) == 1 else f'{len(ordered)} sizes, {w0}x{h0} to {w1}x{h1}'
    return f', {spread}', problems


def _report(task: str, label: str, pairing: Pairing, lq_dir: Path | None, gt_dir: Path, decode: bool,
            allow_unused_gt: bool = False) -> TaskReport:
    count = f'{len(pairing.pairs)} pairs' if lq_dir is not None else f'{len(pairing.pairs)} clean images'
    sizes, problems = _sizes(pairing.pairs, decode, label)
    unused = len(pairing.unmatched_gt) if allow_unused_gt else 0
    summary = count + sizes + (f' ({unused} clean images without a degraded version: allowed)' if unused else '')
    return TaskReport(task, label, summary, pairing.problems(lq_dir, gt_dir, allow_unused_gt) + problems, True)


def check_train(train_root: str | Path, decode: bool = True, data_lists: str = 'official') -> list[TaskReport]:
    """One report per training task below `train_root` (folders of `default_train_roots`), each task with a list
    under `data_lists` (`data.train_lists.list_path`) on the files its list keeps."""
    reports = []
    for task, root in default_train_roots(train_root).items():
        layout, label = TRAIN_LAYOUTS[task], f'{task:<9} {root}'
        try:
            listed = list_path(data_lists, task)
            match = None if listed is None else match_list(task, root, listed)
            pairing = scan_train(task, root, None if match is None else match.kept)
        except DataLayoutError as err:
            reports.append(TaskReport(task, label, 'not found: ' + str(err).split(';')[0]))
            continue
        except ValueError as err:
            reports.append(TaskReport(task, label, problems=[str(err)], found=True))
            continue
        lq_dir = None if layout.lq_dir is None else root / layout.lq_dir
        report = _report(task, label, pairing, lq_dir, root / layout.gt_dir, decode, layout.allow_unused_gt)
        if match is not None:
            report.summary += f'; list: {match.summary}'
            report.notes = match.notes
            if not match.kept:
                report.problems.append(match.nothing_kept)
        reports.append(report)
    return reports


def check_test(test_root: str | Path, decode: bool = True) -> list[TaskReport]:
    """One report per test set below `test_root`, and one per standard task that has none."""
    root = Path(test_root)
    if not root.is_dir():
        return [TaskReport('', str(root), f'not found: {root} does not exist')]
    reports = []
    for task in all_test_tasks(root):
        try:
            found = scan_test_task(root, task)
        except DataLayoutError as err:
            reports.append(TaskReport(task, f'{task:<9} {root / task}', problems=[str(err).splitlines()[0]]))
            continue
        if not found:
            reports.append(TaskReport(task, f'{task:<9} {root / task}', 'not found'))
        for entry in found:
            label = f'{task:<9} {entry.lq_dir.parent if entry.lq_dir else entry.gt_dir}'
            reports.append(_report(task, label, entry.pairing, entry.lq_dir, entry.gt_dir, decode))
    return reports


def _groups(reports: list[TaskReport]) -> list[str]:
    """Whether each `--de_type` group has every task it needs in a usable state."""
    lines = []
    for group, tokens in GROUPS.items():
        needed = dict.fromkeys(train_task(t) for t in tokens)
        lacking = [t for t in needed if not any(r.task == t and r.usable for r in reports)]
        verdict = 'yes' if not lacking else 'no, needs ' + ', '.join(lacking)
        lines.append(f'  {group} (--de_type {" ".join(tokens)}): {verdict}')
    return lines


def _section(title: str, reports: list[TaskReport], layout: str) -> list[str]:
    lines = [title]
    for report in reports:
        lines.append(f'  {report.label}: {report.summary}'.rstrip(': '))
        lines.extend(f'    PROBLEM {p}' for p in report.problems)
        lines.extend(f'    NOTE {n}' for n in report.notes)
    if not all(r.found for r in reports):
        lines += ['  Expected layout (what is not found above):', layout]
    return lines


def run_check(train_root: str | Path, test_root: str | Path, decode: bool = True, data_lists: str = 'official'
              ) -> tuple[str, bool]:
    """The report as text, and whether the tree is free of problems (and holds any data at all); `data_lists`
    as `trainer.py --data_lists`."""
    train, test = check_train(train_root, decode, data_lists), check_test(test_root, decode)
    lines = _section(f'Training data ({train_root}):', train, TRAIN_LAYOUT)
    lines += ['Can train:', *_groups(train)]
    lines += _section(f'Test data ({test_root}):', test, TEST_LAYOUT)
    lines += ['Can test:', *_groups(test)]
    ok = not any(r.problems for r in train + test) and any(r.found for r in train + test)
    lines.append('No problem found.' if ok else 'Problems found (see PROBLEM lines), or no data at all.')
    if any(r.notes for r in train):
        lines.append('NOTE lines: the training lists and the folders differ; training uses the listed files found '
                     '(--data_lists none: every file)')
    return '\n'.join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--train_root', default='data/Train')
    parser.add_argument('--test_root', default='data/Test')
    parser.add_argument('--no_decode', action='store_true', help='only pair names; skip reading every image')
    parser.add_argument('--data_lists', default='official', metavar='{official,none,DIR}',
                        help="the training lists to check against, as trainer.py's flag (default: official)")
    args = parser.parse_args(argv)
    text, ok = run_check(args.train_root, args.test_root, decode=not args.no_decode, data_lists=args.data_lists)
    print(text)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
