"""Shared pieces of the benchmark scripts: timing, peak memory, the matmul peak, the machine, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from utils import allocator


def machine() -> dict:
    """What the figures were measured on."""
    info = {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
            'torch': torch.__version__, 'threads': torch.get_num_threads(),
            'allocator': allocator.in_use()}
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.exists():
        names = [line.split(':', 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith('model name')]
        if names:
            info['cpu'] = names[0]
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Starts a new peak: CUDA's allocator counter, or the process's peak RSS (VmHWM) on the CPU."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path('/proc/self/clear_refs').write_text('5')  # 5 resets VmHWM to the current RSS (Linux)
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                       repeats: int = 5) -> float:
    """The best achieved GFLOP/s of a square matrix product: the machine's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float('inf')
    for _ in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def time_alternating(runs: dict[str, Callable[[], None]], iterations: int, device: torch.device
                     ) -> dict[str, dict[str, float]]:
    """Times each run `iterations` times, alternating A, B, A, B so machine noise hits all alike.

    Besides wall-clock seconds it records the process's CPU seconds (user + system, all threads): on a
    shared machine these move far less with other processes' load than the wall clock does.
    """
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, float] = {name: 0.0 for name in runs}
    for _ in range(iterations):
        for name, run in runs.items():
            reset_peak_memory(device)
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            synchronize(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            peaks[name] = max(peaks[name], peak_memory_mb(device))
    return {name: {'median_s': statistics.median(values), 'min_s': min(values),
                   'cpu_median_s': statistics.median(cpu[name]), 'peak_mb': peaks[name], 'n': len(values)}
            for name, values in wall.items()}


class _GlobalTotalOnly(contextlib.nullcontext):
    """Stands in for FlopCounterMode's module tracker, whose hooks break `autograd.grad` (the gradient
    penalty's double backward); every FLOP is then attributed to the global total only."""

    parents = ('Global',)

    def __exit__(self, *args) -> None:
        return None


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each requested gradient of a convolution costs what its forward costs. torch's own formula ignores
    `groups` for the weight gradient, which overcounts a depth-wise convolution by its channel count (it made
    MRCNet's backward look 13x its forward)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def count_flops(run: Callable[[], object]) -> float:
    """FLOPs of everything `run` computes, forward, backward and double backward, by torch.utils.flop_counter
    (with the convolution-backward formula corrected for grouped convolutions)."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    counter.mod_tracker = _GlobalTotalOnly()
    with counter:
        run()
    return float(counter.get_total_flops())


def write_json(path: str | None, figures: dict) -> None:
    if path:
        figures = dict(figures, command=' '.join([Path(sys.executable).name] + sys.argv), machine=machine())
        Path(path).write_text(json.dumps(figures, indent=2))
        print(f'figures written to {path}')
