"""Benchmark of one DA-RCOT training iteration (critic step, penalty step, map step), variants side by side.

    python bench/train_step.py                                  # paper-size MRCNet, patch 128, batch 2
    python bench/train_step.py --variants reference fast fast+channels_last fast+checkpointing --iters 3

A variant is `reference` (the official order: two map forwards, latent recomputed, looped terms) or
`fast` (`utils.iteration.ot_iteration`), optionally with modifiers joined by '+': `channels_last`,
`checkpointing` (activation checkpointing), `bf16` (autocast of both networks), `compile` (torch.compile of the
map; its compile time is reported). Variants are alternated A, B, A, B after one warm-up each.
Prints median/min seconds, peak memory (RSS on the CPU, allocated on CUDA), FLOPs per iteration from
`torch.utils.flop_counter`, achieved GFLOP/s and its fraction of the matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import count_flops, matmul_peak_gflops, time_alternating, write_json  # noqa: E402
from bench.reference import reference_iteration  # noqa: E402
from net import MODELS, Critic, set_activation_checkpointing  # noqa: E402
from utils import allocator  # noqa: E402
from utils.acceleration import for_training  # noqa: E402
from utils.iteration import ot_iteration  # noqa: E402
from utils.objective import ObjectiveWeights  # noqa: E402

MODIFIERS = ('channels_last', 'checkpointing', 'bf16', 'compile')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=['reference', 'fast'])
    parser.add_argument('--backbone', default='MRCNet', choices=list(MODELS))
    parser.add_argument('--dim', type=int, default=48)
    parser.add_argument('--num_blocks', type=int, nargs=4, default=(4, 6, 6, 8))
    parser.add_argument('--num_refinement_blocks', type=int, default=4)
    parser.add_argument('--patch_size', type=int, default=128)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--critic_width', type=int, default=64, help="the critic's first channels (official 64)")
    parser.add_argument('--iters', type=int, default=3, help='timed iterations per variant, after one warm-up')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--no_flops', action='store_true', help='skip the FLOP count (one extra iteration)')
    parser.add_argument('--json', help='write the figures to this JSON file')
    args = parser.parse_args(argv)
    for variant in args.variants:
        base, *modifiers = variant.split('+')
        unknown = [m for m in modifiers if m not in MODIFIERS]
        if base not in ('fast', 'reference') or unknown:
            parser.error(f'--variants: {variant!r} is not fast|reference[+{"|".join(MODIFIERS)}]')
        if base == 'reference' and (args.backbone != 'MRCNet' or {'bf16', 'compile'} & set(modifiers)):
            parser.error('--variants: the reference order exists for a plain MRCNet only (no bf16, no compile)')
    return args


class Variant:
    """One variant's networks, optimizers and fixed batch; `step()` runs one iteration."""

    def __init__(self, spec: str, args: argparse.Namespace, device: torch.device) -> None:
        base, *modifiers = spec.split('+')
        torch.manual_seed(0)
        transport_map = MODELS[args.backbone](dim=args.dim, num_blocks=tuple(args.num_blocks),
                                              num_refinement_blocks=args.num_refinement_blocks).to(device)
        critic = Critic(args.patch_size, args.critic_width).to(device)
        memory_format = torch.channels_last if 'channels_last' in modifiers else torch.contiguous_format
        transport_map.to(memory_format=memory_format)
        critic.to(memory_format=memory_format)
        set_activation_checkpointing(transport_map, 'checkpointing' in modifiers)
        self.compile_s = 0.0
        # The trainer's own wrappers: bf16 autocast for both networks, torch.compile for the map only.
        amp = 'bf16' in modifiers
        transport_map = for_training(transport_map, device, amp=amp, compile='compile' in modifiers)
        critic = for_training(critic, device, amp=amp)
        self.step_fn = reference_iteration if base == 'reference' else ot_iteration
        self.args = (transport_map, critic, torch.optim.RMSprop(transport_map.parameters(), lr=5e-5),
                     torch.optim.RMSprop(critic.parameters(), lr=1e-4))
        shape = (args.batch, 3, args.patch_size, args.patch_size)
        degraded = torch.rand(shape, device=device).contiguous(memory_format=memory_format)
        target = torch.rand(shape, device=device).contiguous(memory_format=memory_format)
        self.batch = dict(degraded=degraded, labels=torch.arange(args.batch, device=device) % 8, clean=target,
                          target=target, weights=ObjectiveWeights(),
                          alpha=torch.rand(args.batch, 1, 1, 1, device=device))
        self.compiled = 'compile' in modifiers

    def step(self) -> dict[str, float]:
        return self.step_fn(*self.args, self.batch['degraded'], self.batch['labels'], clean=self.batch['clean'],
                            target=self.batch['target'], weights=self.batch['weights'], alpha=self.batch['alpha'])

    def warm_up(self) -> None:
        start = time.perf_counter()
        self.step()
        if self.compiled:
            self.compile_s = time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    variants = {spec: Variant(spec, args, device) for spec in args.variants}
    for variant in variants.values():
        variant.warm_up()
    figures = time_alternating({spec: v.step for spec, v in variants.items()}, args.iters, device)
    peak = matmul_peak_gflops(device)
    for spec, variant in variants.items():
        if not args.no_flops:
            figures[spec]['gflop'] = count_flops(variant.step) / 1e9
            figures[spec]['gflops_per_s'] = figures[spec]['gflop'] / figures[spec]['median_s']
            figures[spec]['peak_fraction'] = figures[spec]['gflops_per_s'] / peak
        if variant.compiled:
            figures[spec]['compile_s'] = variant.compile_s

    print(f'{args.backbone} dim {args.dim} blocks {tuple(args.num_blocks)}, patch {args.patch_size}, '
          f'batch {args.batch}, {args.iters} timed iterations, device {device}; fp32 matmul peak {peak:.0f} GFLOP/s')
    if len(variants) > 1 and device.type == 'cpu':
        print('peak MB: the RSS peak of this one process, which holds every variant (run a variant alone, or '
              'bench/allocator.py, for its own peak)')
    print(f'{"variant":<34} {"median s":>9} {"min s":>8} {"CPU s":>8} {"peak MB":>9} {"GFLOP":>8} {"GFLOP/s":>8} '
          f'{"of peak":>8}')
    for spec, f in figures.items():
        print(f'{spec:<34} {f["median_s"]:>9.2f} {f["min_s"]:>8.2f} {f["cpu_median_s"]:>8.2f} {f["peak_mb"]:>9.0f} '
              f'{f.get("gflop", 0):>8.0f} '
              f'{f.get("gflops_per_s", 0):>8.1f} {f.get("peak_fraction", 0):>8.1%}'
              + (f'  (compile {f["compile_s"]:.0f} s)' if 'compile_s' in f else ''))
    if 'reference' in figures and 'fast' in figures:
        print(f'fast / reference speed-up: {figures["reference"]["median_s"] / figures["fast"]["median_s"]:.2f}x wall, '
              f'{figures["reference"]["cpu_median_s"] / figures["fast"]["cpu_median_s"]:.2f}x CPU time')
    result = {'variants': figures, 'matmul_peak_gflops': peak}
    write_json(args.json, result)
    return result


if __name__ == '__main__':
    allocator.preload()  # freed memory kept for the next step: utils/allocator.py
    main()
