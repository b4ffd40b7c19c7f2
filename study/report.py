"""Study summaries -> a markdown table (mean ± std over seeds), a PNG plot of validation PSNR against training
time (matplotlib, `utils.figures`), TensorBoard scalars and image, and STUDY.md's section."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from utils.atomic import write_text_atomically
from utils.figures import colour, new_figure, write_png


def _mean_std(values: list[float], digits: int) -> str:
    if not values or any(v is None or not np.isfinite(v) for v in values):
        return 'n/a'
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def _average(summary: dict, labels: list[str], metric: str) -> float:
    """A run's metric averaged over the test sets (each set counts once, whatever its size)."""
    return statistics.fmean(summary['final'][label][metric] for label in labels)


def table(summaries: list[dict]) -> str:
    """One row per variant: seeds, parameters, iterations, time per iteration and wall time, PSNR / SSIM per test
    set and their average, and how far that average is from the first variant's; the first row is the degraded
    input. Mean ± sample std over seeds."""
    labels = list(summaries[0]['final'])
    variants = list(dict.fromkeys(s['variant'] for s in summaries))
    head = ['variant', 'seeds', 'params', 'iters', 's/iter', 'wall min', *labels, 'average PSNR', 'average SSIM',
            f'Δ average PSNR vs {summaries[0]["variant"]}']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    first = summaries[0]['final']
    inputs = [f'{first[label]["input_psnr"]:.2f} / {first[label]["input_ssim"]:.3f}' for label in labels]
    average_input = [statistics.fmean(first[label][key] for label in labels) for key in ('input_psnr', 'input_ssim')]
    lines.append('| ' + ' | '.join(['degraded input', '', '', '', '', '', *inputs, f'{average_input[0]:.2f}',
                                    f'{average_input[1]:.3f}', '']) + ' |')
    reference = statistics.fmean(_average(s, labels, 'psnr') for s in summaries if s['variant'] == variants[0])
    for variant in variants:
        runs = [s for s in summaries if s['variant'] == variant]
        cells = [variant, ','.join(str(s['seed']) for s in runs), f'{runs[0]["parameters"]:,}',
                 ','.join(sorted({str(s['iterations']) for s in runs})),
                 _mean_std([s['seconds_per_iteration'] for s in runs], 2),
                 _mean_std([s['wall_seconds'] / 60 for s in runs], 1)]
        for label in labels:
            cells.append(_mean_std([s['final'][label]['psnr'] for s in runs], 2) + ' / '
                         + _mean_std([s['final'][label]['ssim'] for s in runs], 3))
        cells.append(_mean_std([_average(s, labels, 'psnr') for s in runs], 2))
        cells.append(_mean_std([_average(s, labels, 'ssim') for s in runs], 3))
        cells.append(f'{statistics.fmean(_average(s, labels, "psnr") for s in runs) - reference:+.2f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def curve_figure(summaries: list[dict], title: str, size: tuple[int, int] = (900, 500)) -> Figure:
    """Mean validation PSNR over the test sets against training seconds: one line per run with a marker at each
    validation, one colour per variant (the first seed's line carries the variant's legend entry), and a dashed
    line at the degraded input's mean PSNR, the level of the identity map."""
    figure, axes = new_figure(size, title, 'training time (s, validation excluded)',
                              'mean validation PSNR over the test sets (dB)')
    variants = list(dict.fromkeys(s['variant'] for s in summaries))
    for index, variant in enumerate(variants):
        runs = [s for s in summaries if s['variant'] == variant]
        seeds = ','.join(str(s['seed']) for s in runs)
        for k, summary in enumerate(runs):
            # matplotlib leaves labels that start with '_' out of the legend
            label = f'{variant} (seed{"s" if len(runs) > 1 else ""} {seeds})' if k == 0 else \
                f'_{variant} seed {summary["seed"]}'
            axes.plot([p['train_seconds'] for p in summary['curve']], [p['mean_psnr'] for p in summary['curve']],
                      color=colour(index), marker='o', markersize=4, linewidth=1.5, label=label)
    final = summaries[0]['final'] or {}
    if final:
        axes.axhline(statistics.fmean(r['input_psnr'] for r in final.values()), color='0.45', linestyle='--',
                     linewidth=1.2, label='degraded input')
    axes.set_xlim(left=0)
    axes.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize='small')
    return figure


def plot(summaries: list[dict], path: Path, title: str, size: tuple[int, int] = (900, 500)) -> np.ndarray:
    """Writes `curve_figure` to `path` (PNG, atomically) and returns its RGB pixels."""
    return write_png(curve_figure(summaries, title, size), path)


def to_tensorboard(summaries: list[dict], plot_rgb: np.ndarray, log_dir: Path) -> None:
    """Each run's validation PSNR with the training second as its step (TensorBoard plots against steps), and
    the plot as an image. Replaces the events of an earlier report in `log_dir`."""
    for old in Path(log_dir).glob('events.out.tfevents.*'):
        old.unlink()
    with SummaryWriter(str(log_dir)) as writer:
        for summary in summaries:
            tag = f'val_psnr_vs_train_seconds/{summary["variant"]}_seed{summary["seed"]}'
            for point in summary['curve']:
                writer.add_scalar(tag, point['mean_psnr'], round(point['train_seconds']))
        writer.add_image('study/val_psnr_vs_time', torch.from_numpy(plot_rgb).permute(2, 0, 1), 0)


def update_section(study_md: Path, scale: str, body: str) -> None:
    """Replaces the text between `<!-- study:SCALE -->` and `<!-- /study:SCALE -->` in `study_md` (appends the
    markers and the body where they are missing)."""
    start, end = f'<!-- study:{scale} -->', f'<!-- /study:{scale} -->'
    text = study_md.read_text(encoding='utf-8') if study_md.is_file() else ''
    block = f'{start}\n{body.strip()}\n{end}'
    if start in text and end in text:
        text = re.sub(re.escape(start) + '.*?' + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + ('\n\n' if text else '') + block + '\n'
    write_text_atomically(study_md, text)  # a kill mid-write keeps the document whole
