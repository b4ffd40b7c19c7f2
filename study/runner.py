"""Trains each (variant, seed) of a scale through `trainer.main`, one after the other, and summarises its logs.

Every run gets the same flags but its variant's, the same seed list, iteration budget and validation set; its
wall-clock time is measured around the trainer, its training time is the sum of the trainer's own per-step
data and step times (`metrics.jsonl`), so validation is not counted in the time axis of the plot. A run whose
`summary.json` exists is not trained again (delete its folder to redo it); one made by another command line
is an error.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import trainer
from data.test_sets import set_label
from net import MODELS
from study.variants import VARIANTS, Scale
from utils.atomic import write_text_atomically


def trainer_argv(scale: Scale, variant: str, seed: int, data_flags: list[str], val_root: Path, run_dir: Path, *,
                 iters: int | None, val_every: int, minutes: float | None) -> list[str]:
    """The trainer's command line for one run."""
    argv = [*scale.flags, *data_flags, *VARIANTS[variant], '--seed', str(seed), '--device', scale.device,
            '--type', f'study_{scale.name}', '--val_dir', str(val_root), '--val_tasks', *scale.val_tasks,
            '--val_every', str(val_every), '--log_dir', str(run_dir / 'log'), '--ckpt_dir', str(run_dir / 'ckpt')]
    if iters is not None:
        argv += ['--max_iters', str(iters)]
    if minutes is not None:
        argv += ['--max_minutes', str(minutes)]
    return argv


def run_one(argv: list[str], run_dir: Path, variant: str, seed: int) -> dict:
    """Trains one run (unless its summary exists) and returns its summary."""
    summary_path = run_dir / 'summary.json'
    command = ['python', 'trainer.py', *argv]
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding='utf-8'))
        if summary['command'] != command:
            raise SystemExit(f'{run_dir} holds a run of another command line ({" ".join(summary["command"])}); '
                             'delete the folder to redo it, or give another --tag or --out')
        return summary
    started = time.monotonic()
    trainer.main(argv)
    summary = summarise(run_dir / 'log', variant, seed, wall_seconds=time.monotonic() - started)
    summary['command'] = command
    write_text_atomically(summary_path, json.dumps(summary, indent=1) + '\n')  # read back by a resumed study
    return summary


def summarise(log_dir: Path, variant: str, seed: int, wall_seconds: float) -> dict:
    """A run's budget, size and validation curve from the trainer's `metrics.jsonl` and `config.json`."""
    config = json.loads((log_dir / 'config.json').read_text(encoding='utf-8'))
    train_seconds, steps, curve, final = 0.0, 0, [], None
    for line in (log_dir / 'metrics.jsonl').read_text(encoding='utf-8').splitlines():
        record = json.loads(line)
        if 'validation' in record:
            final = {set_label(r['task'], r['set'], r['sigma']):
                     {key: r[key] for key in ('psnr', 'ssim', 'input_psnr', 'input_ssim', 'n_images')}
                     for r in record['validation']}
            curve.append({'step': record['step'], 'train_seconds': train_seconds, 'mean_psnr': record['mean_psnr']})
        else:
            train_seconds += record['data_time'] + record['step_time']
            steps = record['step']
    network = MODELS[config['backbone']](dim=config['dim'], num_blocks=tuple(config['num_blocks']),
                                         num_refinement_blocks=config['num_refinement_blocks'],
                                         heads=tuple(config['heads']),
                                         ffn_expansion_factor=config['ffn_expansion_factor'])
    return {'variant': variant, 'seed': seed, 'backbone': config['backbone'], 'iterations': steps,
            'wall_seconds': wall_seconds, 'train_seconds': train_seconds,
            'seconds_per_iteration': train_seconds / steps if steps else math.nan,
            'parameters': sum(p.numel() for p in network.parameters()), 'curve': curve, 'final': final}
