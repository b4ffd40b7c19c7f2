"""Benchmark of the C memory allocator (`utils.allocator`): training iterations under each allocator.

    python bench/allocator.py                                 # paper-size MRCNet, patch 128, batch 2
    python bench/allocator.py --runs reference:system fast:system fast:retain --rounds 3 -- --dim 24

An allocator is fixed for a process's whole life, so each run `VARIANT:ALLOCATOR` is a separate process of
`bench/train_step.py --variants VARIANT` (one warm-up, then `--iters` timed iterations) started with
DARCOT_ALLOCATOR=ALLOCATOR; the runs alternate A, B, C, A, B, C for `--rounds` rounds so that machine noise
hits all alike. Arguments after `--` go to train_step.py (model size, patch, batch). Prints the median over
rounds of each process's median wall and CPU seconds, the minimum, peak RSS, and each run's speed-up over
the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_json  # noqa: E402
from utils.allocator import CHOICES, VARIABLES, jemalloc_library, settings  # noqa: E402

TRAIN_STEP = Path(__file__).resolve().with_name('train_step.py')


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', nargs='+', default=None,
                        help='VARIANT:ALLOCATOR, VARIANT as in bench/train_step.py, ALLOCATOR one of '
                             f'{", ".join(CHOICES)} (default: both variants under system and retain, and the '
                             'fast one under jemalloc where installed)')
    parser.add_argument('--rounds', type=int, default=2, help='processes per run, alternated')
    parser.add_argument('--iters', type=int, default=2, help='timed iterations per process, after one warm-up')
    parser.add_argument('--json', help='write the figures to this JSON file')
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index('--') if '--' in argv else len(argv)
    args = parser.parse_args(argv[:split])
    if args.runs is None:
        args.runs = ['reference:system', 'fast:system', 'reference:retain', 'fast:retain']
        args.runs += ['fast:jemalloc'] if jemalloc_library() is not None else []
    for run in args.runs:
        variant, _, allocator = run.partition(':')
        if allocator not in CHOICES:
            parser.error(f'--runs: {run!r} is not VARIANT:ALLOCATOR with ALLOCATOR one of {", ".join(CHOICES)}')
        if settings(allocator)[0] != allocator:
            parser.error(f'--runs: {run!r}: {allocator} is not available here (see utils/allocator.py)')
    return args, argv[split + 1:]


def run_once(run: str, iters: int, extra: list[str]) -> dict[str, float]:
    variant, _, allocator = run.partition(':')
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / 'figures.json'
        command = [sys.executable, str(TRAIN_STEP), '--variants', variant, '--iters', str(iters), '--no_flops',
                   '--json', str(out), *extra]
        env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
        subprocess.run(command, check=True, env=dict(env, DARCOT_ALLOCATOR=allocator), stdout=subprocess.DEVNULL)
        figures = json.loads(out.read_text())
    if figures['machine']['allocator'] != allocator:
        raise RuntimeError(f'{run}: the process ran with {figures["machine"]["allocator"]}, not {allocator}')
    return figures['variants'][variant]


def main(argv: list[str] | None = None) -> dict:
    args, extra = parse_args(argv)
    samples: dict[str, list[dict[str, float]]] = {run: [] for run in args.runs}
    for round_index in range(args.rounds):
        for run in args.runs:
            samples[run].append(run_once(run, args.iters, extra))
            print(f'round {round_index + 1}/{args.rounds} {run}: {samples[run][-1]["median_s"]:.2f} s', flush=True)
    figures = {run: {'median_s': statistics.median(s['median_s'] for s in runs),
                     'min_s': min(s['min_s'] for s in runs),
                     'cpu_median_s': statistics.median(s['cpu_median_s'] for s in runs),
                     'peak_mb': max(s['peak_mb'] for s in runs), 'n': sum(s['n'] for s in runs)}
               for run, runs in samples.items()}
    first = figures[args.runs[0]]
    print(f'train_step.py {" ".join(extra) or "(paper size)"}; {args.rounds} processes per run, {args.iters} '
          'timed iterations each')
    print(f'{"run":<28} {"median s":>9} {"min s":>8} {"CPU s":>8} {"peak MB":>9} {"speed-up":>9} {"(CPU)":>7}')
    for run, f in figures.items():
        print(f'{run:<28} {f["median_s"]:>9.2f} {f["min_s"]:>8.2f} {f["cpu_median_s"]:>8.2f} {f["peak_mb"]:>9.0f} '
              f'{first["median_s"] / f["median_s"]:>8.2f}x {first["cpu_median_s"] / f["cpu_median_s"]:>6.2f}x')
    result = {'runs': figures}
    write_json(args.json, result)
    return result


if __name__ == '__main__':
    main()
