"""`python -m net`: parameters and forward GFLOPs of every network at the paper's defaults.

FLOPs are counted by `torch.utils.flop_counter` on the meta device (no weights, no compute), for a
128x128 training patch and a 480x320 test image. The critic is sized for the 128 patch.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import MODELS, Critic


def forward_gflops(model: torch.nn.Module, height: int, width: int) -> float:
    with torch.device('meta'), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, height, width))
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--patch_size', type=int, default=128, help='training patch size (also the critic size)')
    args = parser.parse_args(argv)
    sizes = ((args.patch_size, args.patch_size), (320, 480))
    print(f'{"network":<10} {"parameters":>12} ' + ' '.join(f'{f"GFLOPs {w}x{h}":>16}' for h, w in sizes))
    builders = {**MODELS, 'Critic': lambda: Critic(args.patch_size)}
    for name, build in builders.items():
        with torch.device('meta'):
            model = build()
        params = sum(p.numel() for p in model.parameters())
        # The critic's linear layers fit its patch size only.
        flops = [f'{forward_gflops(model, h, w):>16.1f}' if name != 'Critic' or (h, w) == sizes[0] else f'{"-":>16}'
                 for h, w in sizes]
        print(f'{name:<10} {params:>12,} ' + ' '.join(flops))
    print('GFLOPs are per image for one forward (a multiply-add counts 2); the critic takes only its patch size.')


if __name__ == '__main__':
    main()
