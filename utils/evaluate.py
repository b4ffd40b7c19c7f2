"""`evaluate()`: a transport map on test sets -> one record of metrics per set. Validation during training and
`test.py` both call it.

Every image goes through `utils.inference.restore` as its test set's protocol serves it (`data.test_sets`:
`pad` at full size, the network padding and cropping back; `official` trimmed and, for denoising, noised as
the official tester does); its output is quantised to 8 bits exactly as it is saved (`data.image_io.to_uint8`,
torchvision's `save_image` rule), and scored with `utils.metrics` against the 8-bit target. The degraded
input is scored the same way (`input_psnr`, `input_ssim`), so each record shows what the map gained.

With `save_dir`, each set gets a folder `<save_dir>/<task>/<set>[_sigma<s>]/` holding `restored/` (the
outputs, PNG), `residual/` (|x - T(x)| times `RESIDUAL_GAIN`), `compare/` with `compare=True` (degraded |
restored | residual | target), `input/` with `save_inputs=True` (each degraded input exactly as it was fed
to the network) and `metrics.csv` (one row per image). Images are written atomically and a
CSV row only after its images, so an interrupted run leaves valid outputs; `resume=True` keeps the rows
whose images exist and restores only the rest.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data.image_io import ImageReadError, encode_rgb, read_rgb, to_tensor, to_uint8
from data.test_sets import set_label
from options import TILE_OVERLAP
from utils.atomic import write_bytes_atomically, write_text_atomically
from utils.inference import InferenceMemoryError, restore
from utils.metrics import FID, LPIPS, Unavailable, brightness_offset, psnr, ssim

RESIDUAL_GAIN = 4  # |x - T(x)| is small; scaled by 4 it is visible without clipping most of it
CSV_FIELDS = ('name', 'height', 'width', 'protocol', 'y_channel', 'psnr', 'ssim', 'lpips', 'input_psnr', 'input_ssim',
              'offset', 'input_offset', 'seconds')
_FLOAT_FIELDS = ('psnr', 'ssim', 'input_psnr', 'input_ssim', 'offset', 'input_offset', 'seconds')
_SEPARATOR = 4  # white pixels between the panels of a comparison strip


def set_folder(task: str, name: str, sigma: int | None) -> PurePosixPath:
    """Where a test set's outputs go below `save_dir`: its label (`data.test_sets.set_label`)."""
    return PurePosixPath(set_label(task, name, sigma))


def evaluate(transport_map: nn.Module, test_sets: Sequence, *, device: torch.device | str, tile: int | None = None,
             tile_overlap: int = TILE_OVERLAP, y_channel: bool = False, amp: bool = False,
             save_dir: str | Path | None = None, compare: bool = False, save_inputs: bool = False,
             resume: bool = False, progress: bool = True, lpips: LPIPS | Unavailable | None = None,
             fid: FID | Unavailable | None = None, embeddings: list[dict] | None = None) -> list[dict]:
    """Scores `transport_map` (already on `device`) on each test set (`data.test_sets.TestSet`, whose protocol
    says what is fed); returns one record per set.

    A record: `task`, `set`, `sigma` (None unless noise is synthesised), `protocol`, `y_channel`, `n_images`,
    the means over images of `psnr`, `ssim`, `lpips`, `input_psnr`, `input_ssim`, `offset` and `input_offset`
    (`utils.metrics.brightness_offset` of the restored and of the degraded image), the set's `fid`,
    `seconds_per_image`, `lpips_inputs` (the range LPIPS was fed, `utils.metrics.LPIPS_INPUTS`, None without
    LPIPS), and `not_computed`: {metric: why} for LPIPS/FID when they were not computed.
    `lpips`/`fid` are metrics from `utils.metrics.load_lpips`/`load_fid` (an `Unavailable` is reported,
    None means not requested). `embeddings`, when given a list, receives one
    `{'task', 'set', 'sigma', 'name', 'embedding'}` per image (the pooled residual embedding).

    Raises:
        InferenceMemoryError: naming the image, when it does not fit in memory (use `tile`).
        ValueError: for `resume` together with `embeddings`.
    """
    if resume and embeddings is not None:
        raise ValueError('embeddings need every image restored again: run without --resume (or with --overwrite)')
    device = torch.device(device)
    was_training = transport_map.training
    transport_map.eval()
    try:
        with torch.inference_mode():
            return [_evaluate_set(transport_map, test_set, device=device, tile=tile, tile_overlap=tile_overlap,
                                  y_channel=y_channel, amp=amp, save_dir=None if save_dir is None else Path(save_dir),
                                  compare=compare, save_inputs=save_inputs, resume=resume, progress=progress,
                                  lpips=lpips, fid=fid, embeddings=embeddings)
                    for test_set in test_sets]
    finally:
        transport_map.train(was_training)


def _evaluate_set(transport_map: nn.Module, test_set, *, device: torch.device, tile: int | None,
                  tile_overlap: int, y_channel: bool, amp: bool, save_dir: Path | None, compare: bool,
                  save_inputs: bool, resume: bool, progress: bool, lpips: LPIPS | Unavailable | None,
                  fid: FID | Unavailable | None, embeddings: list[dict] | None) -> dict:
    label = set_folder(test_set.task, test_set.name, test_set.sigma)
    folder = None if save_dir is None else save_dir / label
    protocol = test_set.protocol
    settings = {'protocol': protocol, 'y_channel': y_channel}
    log = _CsvLog(folder / 'metrics.csv', settings if resume else None) if folder is not None else None
    rows, restored_features, target_features = [], [], []
    for index in tqdm(range(len(test_set)), desc=str(label), unit='img', disable=not progress):
        item = test_set[index]
        name = _safe_name(item['name'], label)
        lq, gt = item['lq'][None], item['gt']
        target = to_uint8(gt)
        row = log.done.get(name) if log is not None else None
        if row is not None:
            restored = read_rgb(folder / 'restored' / f'{name}.png') if isinstance(fid, FID) else None
        else:
            started = time.perf_counter()
            try:
                output, pooled = restore(transport_map, lq.to(device), tile=tile, tile_overlap=tile_overlap, amp=amp)
            except InferenceMemoryError as error:
                raise InferenceMemoryError(f'{label}/{name}: {error}') from error
            seconds = time.perf_counter() - started
            restored, degraded = to_uint8(output[0]), to_uint8(lq[0])
            if restored.shape != target.shape:
                raise ValueError(f'{label}/{name}: degraded {degraded.shape[:2]} and target {target.shape[:2]} '
                                 'differ in size; fix or remove this pair')
            try:  # SSIM needs sides of 7 (RGB) or 11 (Y) pixels: say which image is too small
                row = {'name': name, 'height': target.shape[0], 'width': target.shape[1], **settings,
                       'psnr': psnr(restored, target, y_channel=y_channel),
                       'ssim': ssim(restored, target, y_channel=y_channel),
                       'lpips': lpips(restored, target) if isinstance(lpips, LPIPS) else None,
                       'input_psnr': psnr(degraded, target, y_channel=y_channel),
                       'input_ssim': ssim(degraded, target, y_channel=y_channel),
                       'offset': brightness_offset(restored, target),
                       'input_offset': brightness_offset(degraded, target), 'seconds': seconds}
            except ValueError as error:
                raise ValueError(f'{label}/{name} ({target.shape[0]}x{target.shape[1]}): cannot be scored ({error}); '
                                 'remove it from the test set, or restore it with --input/--output') from error
            if embeddings is not None:
                embeddings.append({'task': test_set.task, 'set': test_set.name, 'sigma': test_set.sigma,
                                   'name': name, 'embedding': pooled[0].cpu().numpy()})
            if folder is not None:
                save_outputs(folder, name, degraded, restored, target if compare else None, save_inputs)
                log.append(row)
        rows.append(row)
        if isinstance(fid, FID):
            restored_features.append(fid.embed(restored))
            target_features.append(fid.embed(target))
    return _record(test_set, protocol, y_channel, rows, lpips, fid, restored_features, target_features)


def _record(test_set, protocol: str, y_channel: bool, rows: list[dict], lpips: LPIPS | Unavailable | None,
            fid: FID | Unavailable | None, restored_features: list[np.ndarray],
            target_features: list[np.ndarray]) -> dict:
    def mean(key: str) -> float | None:
        values = [float(row[key]) for row in rows if row[key] is not None]
        return float(np.mean(values)) if values and len(values) == len(rows) else None

    not_computed = {}
    for metric_name, metric in (('lpips', lpips), ('fid', fid)):
        if metric is None:
            not_computed[metric_name] = 'not requested'
        elif isinstance(metric, Unavailable):
            not_computed[metric_name] = metric.reason
    fid_value = None
    if isinstance(fid, FID):
        if len(rows) < 2:
            not_computed['fid'] = 'FID needs at least 2 images in a set'
        else:
            fid_value = FID.distance(restored_features, target_features)
    if isinstance(lpips, LPIPS) and rows and mean('lpips') is None:
        not_computed['lpips'] = 'some images were restored by an earlier run without LPIPS (rerun without --resume)'
    return {'task': test_set.task, 'set': test_set.name, 'sigma': test_set.sigma, 'protocol': protocol,
            'y_channel': y_channel, 'n_images': len(rows), 'psnr': mean('psnr'), 'ssim': mean('ssim'),
            'lpips': mean('lpips'), 'fid': fid_value, 'input_psnr': mean('input_psnr'),
            'input_ssim': mean('input_ssim'), 'offset': mean('offset'), 'input_offset': mean('input_offset'),
            'seconds_per_image': mean('seconds'),
            'lpips_inputs': lpips.inputs if isinstance(lpips, LPIPS) else None, 'not_computed': not_computed}


def _safe_name(name: str, label: PurePosixPath) -> str:
    """An image name as a relative path that stays inside its set's folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or '..' in path.parts or not path.parts:
        raise ValueError(f'{label}: image name {name!r} would write outside the output folder')
    return path.as_posix()


def residual_map(degraded: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """|x - T(x)| of two uint8 images, times `RESIDUAL_GAIN`, clipped to uint8."""
    difference = np.abs(degraded.astype(np.int16) - restored.astype(np.int16)) * RESIDUAL_GAIN
    return np.clip(difference, 0, 255).astype(np.uint8)


def comparison_strip(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-height uint8 images side by side, separated by white bands."""
    band = np.full((panels[0].shape[0], _SEPARATOR, 3), 255, np.uint8)
    pieces = [piece for panel in panels for piece in (panel, band)][:-1]
    return np.concatenate(pieces, axis=1)


def write_image_atomically(path: Path, image: np.ndarray) -> None:
    """Writes an image (format from `path`'s extension) atomically: never a truncated image."""
    write_bytes_atomically(path, encode_rgb(image, path.suffix))


def save_outputs(folder: Path, name: str, degraded: np.ndarray, restored: np.ndarray,
                 target: np.ndarray | None = None, save_input: bool = False) -> None:
    """Restored image and residual map below `folder`, the comparison strip when `target` is given and the
    degraded input with `save_input`. The restored image is written last: its presence marks the image as done."""
    if save_input:
        write_image_atomically(folder / 'input' / f'{name}.png', degraded)
    residual = residual_map(degraded, restored)
    write_image_atomically(folder / 'residual' / f'{name}.png', residual)
    if target is not None:
        write_image_atomically(folder / 'compare' / f'{name}.png',
                               comparison_strip([degraded, restored, residual, target]))
    write_image_atomically(folder / 'restored' / f'{name}.png', restored)


class _CsvLog:
    """The per-image CSV of one set: rows appended and flushed one by one. Resuming with `settings`, the rows
    made with those settings whose restored image exists are kept; a row cut short by an interruption, or
    made with another protocol or channel, is dropped and its image restored again."""

    def __init__(self, path: Path, settings: dict | None) -> None:
        self.path = path
        self.done: dict[str, dict] = self._finished_rows(settings) if settings and path.is_file() else {}
        kept = io.StringIO(newline='')
        writer = csv.DictWriter(kept, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(self.done.values())
        write_text_atomically(path, kept.getvalue())

    def _finished_rows(self, settings: dict) -> dict[str, dict]:
        done = {}
        with open(self.path, newline='', encoding='utf-8') as handle:
            for row in csv.DictReader(handle):
                parsed = _parse_row(row)
                if (parsed is not None and all(parsed[key] == value for key, value in settings.items())
                        and (self.path.parent / 'restored' / f'{parsed["name"]}.png').is_file()):
                    done[parsed['name']] = parsed
        return done

    def append(self, row: dict) -> None:
        with open(self.path, 'a', newline='', encoding='utf-8') as handle:
            csv.DictWriter(handle, CSV_FIELDS).writerow({key: '' if row[key] is None else row[key]
                                                         for key in CSV_FIELDS})
            handle.flush()
            os.fsync(handle.fileno())


def _parse_row(row: dict) -> dict | None:
    """A CSV row back to values; None for a row that an interruption cut short (or an older version wrote
    without a column): its image is restored again."""
    if any(row.get(key) in (None, '') for key in CSV_FIELDS if key != 'lpips'):
        return None
    try:
        parsed = {key: float(row[key]) for key in _FLOAT_FIELDS}
        parsed.update(name=row['name'], height=int(row['height']), width=int(row['width']),
                      protocol=row['protocol'], y_channel=row['y_channel'] == 'True',
                      lpips=float(row['lpips']) if row['lpips'] else None)
    except ValueError:
        return None
    return parsed


def restore_images(transport_map: nn.Module, sources: Sequence[tuple[str, Path]], output_dir: str | Path, *,
                   device: torch.device | str, tile: int | None = None, tile_overlap: int = TILE_OVERLAP,
                   amp: bool = False, resume: bool = False, progress: bool = True) -> tuple[list[str], list[str]]:
    """Restores images without targets (`test.py --input`): `sources` are (name, file) pairs; writes
    `restored/<name>.png` and `residual/<name>.png` below `output_dir`. Returns (names written, one message
    per file that could not be read); with `resume`, images whose output exists are skipped."""
    device, output_dir = torch.device(device), Path(output_dir)
    written, failed = [], []
    transport_map.eval()
    with torch.inference_mode():
        for name, path in tqdm(sources, desc='restoring', unit='img', disable=not progress):
            name = _safe_name(name, PurePosixPath(str(output_dir)))
            if resume and (output_dir / 'restored' / f'{name}.png').is_file():
                continue
            try:
                image = read_rgb(path)
            except ImageReadError as error:
                failed.append(str(error))
                continue
            lq = to_tensor(image)[None].to(device)
            try:
                output, _ = restore(transport_map, lq, tile=tile, tile_overlap=tile_overlap, amp=amp)
            except InferenceMemoryError as error:
                raise InferenceMemoryError(f'{path}: {error}') from error
            save_outputs(output_dir, name, image, to_uint8(output[0]))
            written.append(name)
    return written, failed
