"""Evaluation records -> `summary.json`, a markdown table beside the paper's numbers, and a console table.

The paper's numbers are DA-RCOT's (Tang et al., TPAMI 2025, arXiv 2411.01656, all-in-one tables), RGB
PSNR/SSIM on the full test sets. They are shown labelled as the paper's, next to what was measured on the
sets found here, which may be subsets or other sets: compare only like with like.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.test_sets import set_label
from utils.atomic import write_text_atomically

SETTINGS = ('3 tasks', '5 tasks')


@dataclass(frozen=True)
class PaperResult:
    """One cell pair (PSNR/SSIM) of the paper's tables; `set_key` None matches any set of the task."""

    setting: str
    task: str
    set_key: str | None
    sigma: int | None
    psnr: float
    ssim: float


PAPER_DARCOT = (
    PaperResult('3 tasks', 'dehaze', None, None, 31.26, 0.977),  # SOTS outdoor
    PaperResult('3 tasks', 'derain', 'rain100l', None, 38.36, 0.983),
    PaperResult('3 tasks', 'denoise', 'bsd68', 15, 33.98, 0.934),
    PaperResult('3 tasks', 'denoise', 'bsd68', 25, 31.33, 0.890),
    PaperResult('3 tasks', 'denoise', 'bsd68', 50, 28.10, 0.801),
    PaperResult('5 tasks', 'dehaze', None, None, 30.96, 0.975),
    PaperResult('5 tasks', 'derain', 'rain100l', None, 37.87, 0.980),
    PaperResult('5 tasks', 'denoise', 'bsd68', 25, 31.23, 0.888),
    PaperResult('5 tasks', 'deblur', None, None, 28.68, 0.872),  # GoPro
    PaperResult('5 tasks', 'lowlight', None, None, 23.25, 0.836),  # LOL
)
PAPER_AVERAGES = {'3 tasks': (32.60, 0.917), '5 tasks': (30.40, 0.911)}
PAPER_UNPAIRED_PSNR = {'3 tasks': 30.20, '5 tasks': 25.57}  # averages of the unpaired-training variant


def paper_result(record: dict, setting: str) -> PaperResult | None:
    """The paper's result for the set a record measured, in one setting, if the paper reports one."""
    for result in PAPER_DARCOT:
        if (result.setting == setting and result.task == record['task'] and result.sigma == record['sigma']
                and (result.set_key is None or result.set_key in record['set'].lower())):
            return result
    return None


def _number(value: float | None, digits: int, sign: str = '') -> str:
    """`value` to `digits` decimals, '—' when None; `sign='+'` writes the sign of positive values too."""
    if value is None:
        return '—'
    return 'inf' if math.isinf(value) else f'{value:{sign}.{digits}f}'


def _pair(psnr: float | None, ssim: float | None) -> str:
    return f'{_number(psnr, 2)} / {_number(ssim, 3)}'


def _offsets(record: dict) -> str:
    """The input's and the output's mean brightness offset from the target (grey levels), signed."""
    return f'{_number(record["input_offset"], 1, "+")} / {_number(record["offset"], 1, "+")}'


def _sigma(record: dict) -> str:
    return '' if record['sigma'] is None else str(record['sigma'])


def measured_average(records: Sequence[dict], setting: str) -> tuple[float, float] | None:
    """Mean PSNR/SSIM over the sets of a paper setting, when every one of them was measured."""
    chosen = []
    for result in (r for r in PAPER_DARCOT if r.setting == setting):
        matches = [record for record in records if paper_result(record, setting) is result
                   and record['psnr'] is not None]
        if not matches:
            return None
        chosen.append(matches[0])
    return (sum(r['psnr'] for r in chosen) / len(chosen), sum(r['ssim'] for r in chosen) / len(chosen))


PROTOCOL_TEXT = {
    'pad': 'full size (the network pads and crops back), denoising noise seeded per image (seed 1850)',
    'official': 'as the official testers: denoising with one seed-1850 noise stream over the sorted images and '
                'the first row and column dropped where a side is not a multiple of 4, the other sets trimmed '
                'bottom/right to a multiple of 8'}


def describe_metrics(records: Sequence[dict]) -> str:
    """How the numbers were made (protocol, channel, LPIPS inputs), from the records themselves."""
    protocols = sorted({record['protocol'] for record in records})
    channel = 'Y (BT.601, BasicSR convention)' if any(record['y_channel'] for record in records) else 'RGB'
    lpips = sorted({record['lpips_inputs'] for record in records if record.get('lpips_inputs')})
    return (f'Protocol {", ".join(protocols)}: {"; ".join(PROTOCOL_TEXT[p] for p in protocols)}. {channel} '
            'PSNR/SSIM from scikit-image on the saved 8-bit outputs (data_range=255, quantised as '
            'torchvision\'s save_image). The offset is the mean of image minus target over pixels and channels, '
            'in grey levels of 255: a global brightening or darkening.'
            + (f' LPIPS inputs: {"; ".join(lpips)}.' if lpips else ''))


def markdown_report(records: Sequence[dict], checkpoint: str, warnings: Sequence[str] = ()) -> str:
    """The results as a markdown document: measured beside the paper's DA-RCOT numbers; `warnings` (about the
    checkpoint) come first."""
    lines = ['# DA-RCOT evaluation', '', *[f'**{warning}**\n' for warning in warnings],
             f'Checkpoint: {checkpoint}', '', describe_metrics(records), '',
             '| task | set | σ | images | input PSNR / SSIM | PSNR / SSIM | offset, input / restored | LPIPS | FID '
             '| paper, 3 tasks | paper, 5 tasks |',
             '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for record in records:
        paper = [paper_result(record, setting) for setting in SETTINGS]
        lines.append(f'| {record["task"]} | {record["set"]} | {_sigma(record)} | {record["n_images"]} '
                     f'| {_pair(record["input_psnr"], record["input_ssim"])} | {_pair(record["psnr"], record["ssim"])} '
                     f'| {_offsets(record)} | {_number(record["lpips"], 4)} | {_number(record["fid"], 2)} | '
                     + ' | '.join('' if p is None else _pair(p.psnr, p.ssim) for p in paper) + ' |')
    lines += ['', '| average | measured PSNR / SSIM | paper PSNR / SSIM | paper, unpaired training (PSNR) |',
              '| --- | ---: | ---: | ---: |']
    for setting in SETTINGS:
        measured = measured_average(records, setting)
        lines.append(f'| {setting} | {_pair(*measured) if measured else "— (not every set measured)"} '
                     f'| {_pair(*PAPER_AVERAGES[setting])} | {_number(PAPER_UNPAIRED_PSNR[setting], 2)} |')
    lines += ['', "The paper's columns are DA-RCOT's published numbers (Tang et al., TPAMI 2025, RGB, full test sets: "
              'SOTS outdoor, Rain100L, BSD68, GoPro, LOL), not measured here; a set matches them by task, set name '
              'and σ only.']
    if any(record['y_channel'] for record in records):
        lines.append('The measured numbers are Y-channel; the paper reports RGB.')
    notes = sorted({f'{metric.upper()} not computed: {reason}' for record in records
                    for metric, reason in record['not_computed'].items()})
    if notes:
        lines += [''] + [f'- {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def console_table(records: Sequence[dict]) -> str:
    """Degraded input vs restored PSNR/SSIM per set, as fixed-width text."""
    header = (f'{"set":<32} {"n":>4}  {"input PSNR":>10} {"SSIM":>6}  {"restored PSNR":>13} {"SSIM":>6}  '
              f'{"gain":>6}')
    rows = [header, '-' * len(header)]
    for record in records:
        gain = None if record['psnr'] is None else record['psnr'] - record['input_psnr']
        rows.append(f'{set_label(record["task"], record["set"], record["sigma"]):<32} {record["n_images"]:>4}  '
                    f'{_number(record["input_psnr"], 2):>10} {_number(record["input_ssim"], 3):>6}  '
                    f'{_number(record["psnr"], 2):>13} {_number(record["ssim"], 3):>6}  {_number(gain, 2):>6}')
    return '\n'.join(rows)


def write_reports(records: Sequence[dict], save_dir: str | Path, checkpoint: str,
                  warnings: Sequence[str] = ()) -> tuple[Path, Path]:
    """`summary.json` (the records; infinities, from identical images, as null) and `results.md` (with
    `warnings` about the checkpoint at its top)."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    clean = [{key: None if isinstance(value, float) and not math.isfinite(value) else value
              for key, value in record.items()} for record in records]
    summary, markdown = save_dir / 'summary.json', save_dir / 'results.md'
    write_text_atomically(summary, json.dumps(clean, indent=2) + '\n')
    write_text_atomically(markdown, markdown_report(records, checkpoint, warnings))
    return summary, markdown
