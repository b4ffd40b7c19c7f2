"""The benchmark scripts run at a tiny size and count FLOPs correctly (no timing is asserted)."""

import pytest
import torch
from torch import nn

from bench import allocator as allocator_bench
from bench import inference, train_step
from bench.common import count_flops
from utils.allocator import settings

TINY = ['--dim', '8', '--num_blocks', '1', '1', '1', '1', '--num_refinement_blocks', '1', '--iters', '1',
        '--device', 'cpu']


@pytest.mark.parametrize('groups', [1, 16])
def test_convolution_backward_costs_twice_its_forward(groups):
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=groups)
    x = torch.rand(2, 16, 8, 8, requires_grad=True)
    forward = count_flops(lambda: conv(x))
    assert forward == 2 * 16 * (16 // groups) * 9 * 2 * 8 * 8
    assert count_flops(lambda: conv(x).sum().backward()) == pytest.approx(3 * forward)


@pytest.mark.slow
def test_train_step_benchmark_reports_every_variant(tmp_path):
    result = train_step.main([*TINY, '--patch_size', '32', '--batch', '2', '--variants', 'reference', 'fast',
                              'fast+checkpointing', '--json', str(tmp_path / 'train.json')])
    assert set(result['variants']) == {'reference', 'fast', 'fast+checkpointing'}
    for figures in result['variants'].values():
        assert figures['median_s'] > 0 and figures['peak_mb'] > 0 and figures['gflop'] > 0
    # One map forward instead of two: the fast iteration computes less.
    assert result['variants']['fast']['gflop'] < result['variants']['reference']['gflop']
    assert (tmp_path / 'train.json').is_file()


@pytest.mark.slow
def test_inference_benchmark_runs_whole_and_tiled():
    figures = inference.main([*TINY, '--sizes', '40x24', '--tiled', '72x40', '--tile', '32', '--tile_overlap', '8'])
    assert set(figures) == {'40x24 official', '40x24 fast', '72x40 tile 32 fast'}


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit):
        train_step.parse_args(['--variants', 'fast+turbo'])


@pytest.mark.slow
def test_data_benchmark_reports_patches_per_second(tmp_path):
    from bench import data

    figures = data.main(['--demo_root', str(tmp_path / 'demo'), '--patch_size', '32', '--batch', '2',
                         '--workers', '0', '--batches', '2'])
    assert {'demo workers=0 cache=False', 'demo workers=0 cache=True'} <= set(figures)
    assert all(f['patches_per_s'] > 0 for f in figures.values())


@pytest.mark.slow
def test_allocator_benchmark_runs_each_allocator_in_its_own_process(tmp_path):
    runs = ['fast:system'] + [f'fast:{name}' for name in ('retain', 'jemalloc') if settings(name)[0] == name]
    result = allocator_bench.main(['--runs', *runs, '--rounds', '1', '--iters', '1', '--json',
                                   str(tmp_path / 'alloc.json'), '--', *TINY[:-4], '--patch_size', '32'])
    assert list(result['runs']) == runs  # and each child reported the allocator it was asked for
    assert all(figures['median_s'] > 0 and figures['peak_mb'] > 0 for figures in result['runs'].values())


def test_allocator_benchmark_rejects_an_unknown_allocator():
    with pytest.raises(SystemExit):
        allocator_bench.parse_args(['--runs', 'fast:tcmalloc'])
