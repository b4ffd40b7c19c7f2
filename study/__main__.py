"""`python -m study`: train the variants of a scale, then write the table, the plot and STUDY.md's section.

    python -m study --scale demo                                   # 10 runs, about a quarter of an hour on 2 CPU cores
    python -m study --scale shared
    python -m study --scale paper --dry_run                        # print the GPU commands
    python -m study --scale demo --variants DA-RCOT L1-only --seeds 0 --iters 2 --val_every 1 --out /tmp/s
    python -m study --scale demo --variants DA-RCOT Restormer --iters 160 --val_every 40 --tag demo_long
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from study import report
from study.runner import run_one, trainer_argv
from study.variants import SCALES, VARIANTS, Scale, link_subset, runs
from utils.atomic import write_text_atomically


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m study', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', choices=tuple(SCALES), default='demo')
    parser.add_argument('--variants', nargs='+', choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument('--seeds', nargs='+', type=int, default=None,
                        help='seeds of the main variants (the others take the first); default: the scale\'s')
    parser.add_argument('--iters', '--budget', type=int, default=None, dest='iters',
                        help='iterations per run (default: the scale\'s)')
    parser.add_argument('--val_every', type=int, default=None, help='iterations between validations')
    parser.add_argument('--val_images', type=int, default=None, help='images per test set (0: all)')
    parser.add_argument('--minutes', type=float, default=None, help='also stop each run after this many minutes')
    parser.add_argument('--torch_threads', type=int, default=1,
                        help='intra-op threads on a CPU (1: tiny convolutions are fastest on one thread)')
    parser.add_argument('--tag', default=None,
                        help="names the run folders, the plot and STUDY.md's section (default: the scale)")
    parser.add_argument('--out', type=Path, default=None, help='run folders (default: study_runs/<tag>)')
    parser.add_argument('--plot', type=Path, default=None, help='PNG (default: study/plots/<tag>_val_psnr.png)')
    parser.add_argument('--study_md', type=Path, default=Path('STUDY.md'), help='the report to update')
    parser.add_argument('--dry_run', action='store_true', help='print the trainer commands, train nothing')
    return parser


def main(argv: list[str] | None = None, scale: Scale | None = None) -> list[dict]:
    """Runs the study; `scale` replaces the named one (tests use a tiny one). Returns the run summaries."""
    args = build_parser().parse_args(argv)
    scale = scale or SCALES[args.scale]
    scale = replace(scale, iters=args.iters or scale.iters, val_every=args.val_every or scale.val_every,
                    seeds=tuple(args.seeds or scale.seeds),
                    val_images=scale.val_images if args.val_images is None else args.val_images)
    tag = args.tag or scale.name
    out = args.out or Path('study_runs') / tag
    plot_path = args.plot or Path('study') / 'plots' / f'{tag}_val_psnr.png'
    if scale.device == 'cpu':
        torch.set_num_threads(args.torch_threads)
    data_flags, test_root = scale.prepare(out)
    val_root = test_root if args.dry_run or not scale.val_images else link_subset(
        test_root, scale.val_tasks, scale.val_images, out / 'val')
    planned = runs(scale, tuple(args.variants), scale.seeds)
    summaries, started = [], time.monotonic()
    for variant, seed in planned:
        run_dir = out / f'{variant}_seed{seed}'
        argv_run = trainer_argv(scale, variant, seed, data_flags, val_root, run_dir, iters=scale.iters,
                                val_every=scale.val_every, minutes=args.minutes)
        if args.dry_run:
            print(shlex.join(['python', 'trainer.py', *argv_run]))
            continue
        print(f'[study] {scale.name}: {variant} seed {seed} -> {run_dir}', flush=True)
        summaries.append(run_one(argv_run, run_dir, variant, seed))
    if args.dry_run:
        return []
    write_text_atomically(out / 'results.json', json.dumps(summaries, indent=1) + '\n')
    title = f'{tag}: mean validation PSNR vs training time'
    image = report.plot(summaries, plot_path, title)
    report.to_tensorboard(summaries, image, out / 'tensorboard')
    command = sys.argv[1:] if argv is None else argv
    body = section(scale, summaries, plot_path, args, command, val_root, time.monotonic() - started)
    report.update_section(args.study_md, tag, body)
    print(body)
    return summaries


def section(scale: Scale, summaries: list[dict], plot_path: Path, args: argparse.Namespace, command: list[str],
            val_root: Path, seconds: float) -> str:
    """STUDY.md's generated part for one scale: what ran, where, the table and the plot."""
    images = 'all images' if not scale.val_images else f'the first {scale.val_images} image(s)'
    try:
        plot_link = plot_path.resolve().relative_to(args.study_md.resolve().parent)
    except ValueError:
        plot_link = plot_path.resolve()
    machine = f'{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, ' \
              f'{args.torch_threads} intra-op thread(s)'
    return '\n'.join([
        f'*Generated by `{shlex.join(["python", "-m", "study", *command])}` on {time.strftime("%Y-%m-%d %H:%M")} '
        f'({machine}); {len(summaries)} runs, {sum(s["wall_seconds"] for s in summaries) / 60:.1f} min of '
        f'training wall-clock time in all (this invocation: {seconds / 60:.1f} min; finished runs are reused).*',
        '',
        f'Budget: {scale.iters} iterations per run, validation every {scale.val_every} iterations on {images} of '
        f'each test set of {", ".join(scale.val_tasks)} (`{val_root}`). PSNR (dB) / SSIM, RGB, 8-bit, at full '
        'size (`utils.evaluate`, protocol `pad`) after the last iteration; mean ± sample std over seeds.',
        '',
        report.table(summaries),
        '',
        f'![validation PSNR against training time]({plot_link})',
    ])


if __name__ == '__main__':
    main()
