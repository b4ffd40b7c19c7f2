"""Which precision the networks run in: `--amp auto|on|off`, chosen from what the hardware is.

The rule of `auto` (the default of `trainer.py` and `test.py`):

- a CUDA device: bfloat16 autocast where the device computes bfloat16 natively
  (`torch.cuda.is_bf16_supported(including_emulation=False)`: compute capability 8.0 and newer), else float32;
- an x86 CPU: bfloat16 where it has AVX-512-BF16 or AMX (read through torch's cpuinfo), else float32: without
  them every bfloat16 kernel is emulated and a training iteration runs many times slower than in float32;
- any other CPU (ARM, or a torch that cannot say): a short timed probe, bfloat16 only where it beats float32.

`on` forces bfloat16 (on a CPU that emulates it, a warning says how much slower the probe measured it); `off`
forces float32. The choice and its reason are printed and recorded with the run.
"""

from __future__ import annotations

import platform
import time
import warnings
from dataclasses import dataclass

import torch

CHOICES = ('auto', 'on', 'off')
X86 = ('x86_64', 'amd64', 'i386', 'i686')


@dataclass(frozen=True)
class Precision:
    """The precision a run uses and why: `amp` True means bfloat16 autocast."""

    requested: str
    amp: bool
    reason: str

    @property
    def dtype(self) -> str:
        return 'bfloat16' if self.amp else 'float32'

    def describe(self) -> str:
        return f'{self.dtype} (--amp {self.requested}: {self.reason})'

    def to_dict(self) -> dict:
        return {'amp': self.requested, 'dtype': self.dtype, 'reason': self.reason}


def cpu_bf16_native() -> bool | None:
    """True/False where torch can tell whether this CPU computes bfloat16 natively; None where it cannot."""
    if platform.machine().lower() not in X86:
        return None
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these cpuinfo queries
        return None


def autocast(device_type: str, amp: bool) -> torch.autocast:
    """The mixed precision of every forward here (training, inference, the probe): bfloat16 autocast on
    `device_type` where `amp`, none otherwise."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp)


def probe_bf16_slowdown(size: int = 48, channels: int = 32, repeats: int = 3) -> float:
    """Time of a 3x3 convolution's forward and backward under bfloat16 autocast over its float32 time, on the
    CPU (best of `repeats`; about a second where bfloat16 is emulated). Below 1: bfloat16 is faster."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, size, size, generator=generator)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def best(amp: bool) -> float:
        times = []
        for _ in range(repeats + 1):  # the first call pays for the kernels' set-up
            started = time.perf_counter()
            with autocast('cpu', amp):
                conv(x).float().sum().backward()
            times.append(time.perf_counter() - started)
        return min(times[1:])

    return best(True) / best(False)


def choose(requested: str, device: torch.device) -> Precision:
    """The precision for `--amp requested` on `device`, following the module's rule."""
    if requested not in CHOICES:
        raise ValueError(f'--amp {requested}: choose one of {", ".join(CHOICES)}')
    if requested == 'off':
        return Precision(requested, False, 'float32 asked for')
    if device.type == 'cuda':
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name(device)
        reason = f'{name} {"computes" if native else "does not compute"} bfloat16 natively'
        if requested == 'on' and not native:
            warnings.warn(f'--amp on: {reason}; bfloat16 runs emulated there, slower than --amp off',
                          RuntimeWarning, stacklevel=2)
        return Precision(requested, native or requested == 'on', reason)
    if device.type != 'cpu':
        return Precision(requested, requested == 'on', f'no bfloat16 rule for {device.type} devices')
    native = cpu_bf16_native()
    if native is None:
        slowdown = probe_bf16_slowdown()
        native = slowdown < 1
        reason = f'a timed probe ran bfloat16 at {slowdown:.2f}x the float32 time on this CPU'
    else:
        slowdown = None
        reason = f'this CPU {"has" if native else "has neither"} AVX-512-BF16 {"or" if native else "nor"} AMX'
    if requested == 'on' and not native:
        slowdown = slowdown if slowdown is not None else probe_bf16_slowdown()
        warnings.warn(f'--amp on: {reason}, so bfloat16 is emulated; a probe convolution ran {slowdown:.1f}x '
                      'slower than in float32. --amp auto (or off) runs float32 here', RuntimeWarning, stacklevel=2)
    return Precision(requested, native or requested == 'on', reason)
