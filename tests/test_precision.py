"""utils.precision: what `--amp auto|on|off` picks, with each hardware answer forced."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from utils import precision

CPU, CUDA = torch.device('cpu'), torch.device('cuda', 0)


def force_cpu(monkeypatch, *, x86: bool = True, avx512_bf16: bool = False, amx: bool = False,
              probe: float | None = None) -> list[int]:
    """Makes this CPU look as asked; returns a list that counts the timed probes run."""
    monkeypatch.setattr(precision.platform, 'machine', lambda: 'x86_64' if x86 else 'aarch64')
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx, raising=False)
    probes = []

    def fake_probe() -> float:
        probes.append(1)
        return probe if probe is not None else 6.0

    monkeypatch.setattr(precision, 'probe_bf16_slowdown', fake_probe)
    return probes


def test_auto_is_float32_on_an_avx2_cpu_and_probes_nothing(monkeypatch):
    probes = force_cpu(monkeypatch)
    chosen = precision.choose('auto', CPU)
    assert (chosen.amp, chosen.dtype) == (False, 'float32') and 'neither AVX-512-BF16 nor AMX' in chosen.reason
    assert probes == []


@pytest.mark.parametrize('flags', [dict(avx512_bf16=True), dict(amx=True)])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(monkeypatch, flags):
    force_cpu(monkeypatch, **flags)
    chosen = precision.choose('auto', CPU)
    assert chosen.amp and chosen.dtype == 'bfloat16'


@pytest.mark.parametrize('slowdown, amp', [(0.6, True), (3.0, False)])
def test_auto_probes_where_torch_cannot_tell(monkeypatch, slowdown, amp):
    probes = force_cpu(monkeypatch, x86=False, probe=slowdown)
    chosen = precision.choose('auto', CPU)
    assert chosen.amp is amp and probes == [1] and f'{slowdown:.2f}x' in chosen.reason


def test_forcing_bf16_on_an_emulating_cpu_warns_with_the_measured_slowdown(monkeypatch):
    force_cpu(monkeypatch, probe=7.25)
    with pytest.warns(RuntimeWarning, match=r'emulated; a probe convolution ran 7\.2x slower'):
        chosen = precision.choose('on', CPU)
    assert chosen.amp


def test_forcing_bf16_where_it_is_native_does_not_warn(monkeypatch):
    force_cpu(monkeypatch, avx512_bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert precision.choose('on', CPU).amp


def test_off_is_float32_everywhere(monkeypatch):
    force_cpu(monkeypatch, avx512_bf16=True)
    assert not precision.choose('off', CPU).amp


@pytest.mark.parametrize('native', [True, False])
def test_auto_on_cuda_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: native)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: 'a GPU')
    chosen = precision.choose('auto', CUDA)
    assert chosen.amp is native and chosen.reason.startswith('a GPU')


def test_unknown_choice_names_the_flag():
    with pytest.raises(ValueError, match='--amp fast: choose one of auto, on, off'):
        precision.choose('fast', CPU)


def test_the_probe_times_a_real_convolution():
    slowdown = precision.probe_bf16_slowdown(size=16, channels=8, repeats=1)
    assert 0 < slowdown < 1000


def test_the_choice_is_recorded_as_plain_data(monkeypatch):
    force_cpu(monkeypatch)
    recorded = json.loads(json.dumps(precision.choose('auto', CPU).to_dict()))
    assert recorded == {'amp': 'auto', 'dtype': 'float32', 'reason': 'this CPU has neither AVX-512-BF16 nor AMX'}
