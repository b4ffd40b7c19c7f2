"""Study summaries -> a markdown table (mean ± std over seeds), a PNG plot of validation PSNR against training
time (drawn with OpenCV: no plotting dependency), TensorBoard scalars and image, and STUDY.md's section."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

# BGR colours of the variants, in the order of study.variants.VARIANTS.
COLOURS = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127))


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


def plot(summaries: list[dict], path: Path, title: str, size: tuple[int, int] = (720, 420)) -> np.ndarray:
    """Mean validation PSNR (all test sets) against training seconds, one line per run, one colour per variant,
    and a dashed line at the degraded input's mean PSNR; writes `path` (PNG) and returns the RGB image."""
    width, height = size
    left, right, top, bottom = 60, 150, 45, 45
    points = [(p['train_seconds'], p['mean_psnr']) for s in summaries for p in s['curve']]
    final = summaries[0]['final'] or {}
    identity = statistics.fmean(r['input_psnr'] for r in final.values()) if final else None
    xs = [0.0] + [x for x, _ in points]
    ys = [y for _, y in points] + ([identity] if identity is not None else []) or [0.0]
    x_max = max(xs) * 1.05 or 1.0
    y_min, y_max = min(ys), max(ys)
    pad = max(0.1, (y_max - y_min) * 0.1)
    y_min, y_max = y_min - pad, y_max + pad
    image = np.full((height, width, 3), 255, np.uint8)

    def at(x: float, y: float) -> tuple[int, int]:
        return (int(left + x / x_max * (width - left - right)),
                int(height - bottom - (y - y_min) / (y_max - y_min) * (height - top - bottom)))

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(image, at(0, y_min), at(x_max, y_max), (0, 0, 0), 1)
    for tick in np.linspace(0, x_max, 5):
        x, y = at(tick, y_min)
        cv2.putText(image, f'{tick:.0f}', (x - 10, y + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for tick in np.linspace(y_min, y_max, 5):
        x, y = at(0, tick)
        cv2.putText(image, f'{tick:.2f}', (x - 52, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, 'training time (s, validation excluded)', (left + 120, height - 8), font, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(image, title, (left, 18), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if identity is not None:  # what the degraded input itself scores: the identity map's level
        x0, y0 = at(0, identity)
        x1 = at(x_max, identity)[0]
        for x in range(x0, x1, 12):
            cv2.line(image, (x, y0), (min(x + 6, x1), y0), (150, 150, 150), 1, cv2.LINE_AA)
        cv2.putText(image, 'degraded input', (x0 + 5, y0 - 5), font, 0.4, (120, 120, 120), 1, cv2.LINE_AA)
    variants = list(dict.fromkeys(s['variant'] for s in summaries))
    for index, variant in enumerate(variants):
        colour = COLOURS[index % len(COLOURS)]
        for summary in (s for s in summaries if s['variant'] == variant):
            line = [at(p['train_seconds'], p['mean_psnr']) for p in summary['curve']]
            if len(line) > 1:
                cv2.polylines(image, [np.array(line, np.int32)], False, colour, 2, cv2.LINE_AA)
            for point in line:
                cv2.circle(image, point, 3, colour, -1, cv2.LINE_AA)
        y = top + 15 + 20 * index
        cv2.line(image, (width - right + 10, y - 4), (width - right + 30, y - 4), colour, 2, cv2.LINE_AA)
        cv2.putText(image, variant, (width - right + 35, y), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, 'mean val PSNR (dB)', (4, top - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return image[:, :, ::-1].copy()


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
    study_md.write_text(text, encoding='utf-8')
