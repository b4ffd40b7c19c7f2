"""What a training run reports, from rank 0 only: TensorBoard, a JSON-lines record per iteration, a tqdm bar.

`log_dir` receives
- TensorBoard events: every loss term, the transport distance, the gradient penalty, learning rates, data vs
  step time, skipped updates, validation PSNR/SSIM per test set, image grids, and the config as text;
- `metrics.jsonl`: one line per iteration (`step`, `epoch`, `iteration`, `paired`, every term, learning
  rates, times) and one per validation (`validation`: the records of `utils.evaluate.evaluate`);
- `config.json` (the resolved config) and `command.txt` (every command line that ran into this folder).

On resume, records after the checkpoint's step are dropped from `metrics.jsonl` and from TensorBoard
(`purge_step`), so the logs read as one uninterrupted run.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from data.test_sets import set_label
from utils.atomic import write_text_atomically

# TensorBoard tag of each iteration term; terms not listed go under train/.
TAGS = {
    'loss': 'loss/map', 'critic_loss': 'loss/critic', 'gp': 'loss/gradient_penalty',
    'transport_distance': 'ot/transport_distance', 'critic_on_output': 'ot/critic_on_output',
    'pix': 'cost/pix', 'fourier': 'cost/fourier', 'contrastive': 'cost/contrastive', 'l1': 'loss/l1',
}


class Monitor:
    """Logs of one run; every method does nothing on processes other than rank 0 (`enabled=False`)."""

    def __init__(self, log_dir: str | Path, *, enabled: bool, start_step: int, total_steps: int,
                 log_every: int, image_every: int) -> None:
        self.enabled, self.log_every, self.image_every = enabled, log_every, image_every
        self.start_step = start_step
        self.log_dir = Path(log_dir)
        self.skipped_total = 0
        self._unwritten: tuple | None = None  # the newest iteration's scalars, when --log_every skipped them
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not enabled, dynamic_ncols=True,
                        unit='it', desc='train')
        if not enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl_path = self.log_dir / 'metrics.jsonl'
        self.skipped_total = _truncate_jsonl(self._jsonl_path, start_step)
        # A fresh run hides older events in this folder; a resumed one those after its checkpoint.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start_step + 1 if start_step else 0)
        self._jsonl = self._jsonl_path.open('a', encoding='utf-8')

    def record_run(self, config: dict, command: list[str]) -> None:
        """Saves the resolved config and the command line, and shows the config in TensorBoard."""
        if not self.enabled:
            return
        write_text_atomically(self.log_dir / 'config.json', json.dumps(config, indent=2) + '\n')
        with (self.log_dir / 'command.txt').open('a', encoding='utf-8') as handle:
            handle.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")}\n{shlex.join(command)}\n')
        text = '\n'.join(f'    {key}: {value}' for key, value in config.items())
        self.writer.add_text('config', text, 0)

    def iteration(self, step: int, epoch: int, iteration: int, paired: bool, terms: dict[str, float],
                  lrs: dict[str, float], data_time: float, step_time: float) -> None:
        """Records iteration `step` (1-based: the number of iterations done). TensorBoard gets every
        `log_every`-th, and the first and the last of the run whatever `log_every` is (the last at `close`)."""
        if not self.enabled:
            return
        self.skipped_total += terms.get('skipped', 0)
        record = {'step': step, 'epoch': epoch, 'iteration': iteration, 'paired': paired, **terms,
                  **{f'lr_{name}': value for name, value in lrs.items()}, 'data_time': data_time,
                  'step_time': step_time}
        self._jsonl.write(json.dumps(record) + '\n')
        self._jsonl.flush()
        shown = {name: terms[name] for name in ('loss', 'l1', 'transport_distance', 'gp') if name in terms}
        self.bar.set_description(f'epoch {epoch} iter {iteration}', refresh=False)
        self.bar.set_postfix({name: f'{value:.4g}' for name, value in shown.items()}, refresh=False)
        self.bar.update(1)
        self._unwritten = (step, terms, lrs, data_time, step_time)
        if step % self.log_every == 0 or step == self.start_step + 1:
            self._scalars(*self._unwritten)

    def _scalars(self, step: int, terms: dict[str, float], lrs: dict[str, float], data_time: float,
                 step_time: float) -> None:
        self._unwritten = None
        for name, value in terms.items():
            self.writer.add_scalar(TAGS.get(name, f'train/{name}'), value, step)
        self.writer.add_scalar('train/skipped_updates_total', self.skipped_total, step)
        for name, value in lrs.items():
            self.writer.add_scalar(f'lr/{name}', value, step)
        self.writer.add_scalar('time/data', data_time, step)
        self.writer.add_scalar('time/step', step_time, step)

    def wants_images(self, step: int) -> bool:
        return self.enabled and step % self.image_every == 0

    def images(self, step: int, degraded: torch.Tensor, restored: torch.Tensor, target: torch.Tensor) -> None:
        """A grid of up to four samples; rows: degraded, restored, target, |degraded - restored| x 4."""
        if not self.enabled:
            return
        n = min(4, len(degraded))
        rows = [degraded[:n], restored[:n], target[:n], ((degraded[:n] - restored[:n]).abs() * 4)]
        grid = make_grid(torch.cat(rows).float().clamp(0, 1).cpu(), nrow=n, padding=2)
        self.writer.add_image('samples/degraded_restored_target_residual', grid, step)

    def validation(self, step: int, records: list[dict], mean_psnr: float, weights: str = '') -> None:
        """Per-set PSNR/SSIM (and what the input scored) after `step` iterations; `weights` 'raw' tags the
        scores of the raw weights of a run that keeps an EMA (`val_raw_psnr/...`; the EMA's are `val_psnr/...`)."""
        if not self.enabled:
            return
        prefix = f'val_{weights}_' if weights else 'val_'
        for record in records:
            label = set_label(record['task'], record['set'], record['sigma'])
            for metric in ('psnr', 'ssim'):
                self.writer.add_scalar(f'{prefix}{metric}/{label}', record[metric], step)
        self.writer.add_scalar(f'{prefix}psnr/mean', mean_psnr, step)
        self._jsonl.write(json.dumps({'step': step, 'validation': records, 'mean_psnr': mean_psnr,
                                      **({'weights': weights} if weights else {})}) + '\n')
        self._jsonl.flush()
        self.message(f'validation{f" ({weights} weights)" if weights else ""} after {step} iterations: mean PSNR '
                     f'{mean_psnr:.2f} dB | ' + ' | '.join(
            f'{set_label(r["task"], r["set"], r["sigma"])} {r["psnr"]:.2f} dB '
            f'(input {r["input_psnr"]:.2f})' for r in records))

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        if self.enabled:
            if self._unwritten is not None:
                self._scalars(*self._unwritten)
            self.writer.close()
            self._jsonl.close()


def _truncate_jsonl(path: Path, start_step: int) -> int:
    """Drops records after `start_step` (left by an interrupted run); returns the skipped updates kept."""
    if not path.is_file():
        return 0
    kept, skipped = [], 0
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if record.get('step', 0) <= start_step:
            kept.append(line)
            skipped += record.get('skipped', 0)
    write_text_atomically(path, ''.join(f'{line}\n' for line in kept))  # a kill here keeps the old file whole
    return skipped
