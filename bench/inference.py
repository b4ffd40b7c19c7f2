"""Benchmark of restoring whole images with the transport map: latency and peak memory, variants side by side.

    python bench/inference.py                                    # paper-size MRCNet, 480x320
    python bench/inference.py --sizes 480x320 1280x720 --tiled 3840x2160 --tile 512 --iters 2

Variants: `official` (the official forward order: pass 2 recomputes the latent, under no_grad), `fast`
(`utils.inference.restore` under inference_mode), with modifiers joined by '+': `channels_last`, `bf16`
(autocast; changes the numbers slightly), and `onnx` (the map exported with dynamic height and width by
`utils.export`, run by ONNX Runtime on the CPU with torch's thread count; needs requirements-export.txt).
`--tiled` sizes run the fast variants through overlapping tiles. Variants are alternated A, B, A, B after one
warm-up each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import time_alternating, write_json  # noqa: E402
from bench.reference import official_order_forward  # noqa: E402
from net import MRCNet  # noqa: E402
from utils import allocator  # noqa: E402
from utils.checkpoint import FORMAT, VERSION, model_spec  # noqa: E402
from utils.export import OnnxMap, save_onnx  # noqa: E402
from utils.inference import restore  # noqa: E402

MODIFIERS = ('channels_last', 'bf16')


def size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split('x'))
    return width, height


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=['official', 'fast'])
    parser.add_argument('--sizes', nargs='+', type=size, default=[(480, 320)], help='WIDTHxHEIGHT, whole image')
    parser.add_argument('--tiled', nargs='*', type=size, default=[], help='WIDTHxHEIGHT, restored in tiles')
    parser.add_argument('--tile', type=int, default=512)
    parser.add_argument('--tile_overlap', type=int, default=32)
    parser.add_argument('--dim', type=int, default=48)
    parser.add_argument('--num_blocks', type=int, nargs=4, default=(4, 6, 6, 8))
    parser.add_argument('--num_refinement_blocks', type=int, default=4)
    parser.add_argument('--iters', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json')
    args = parser.parse_args(argv)
    for variant in args.variants:
        base, *modifiers = variant.split('+')
        if variant == 'onnx':
            continue
        if base not in ('official', 'fast') or any(m not in MODIFIERS for m in modifiers):
            parser.error(f'--variants: {variant!r} is not onnx or official|fast[+{"|".join(MODIFIERS)}]')
        if base == 'official' and 'bf16' in modifiers:
            parser.error('--variants: the official order runs in float32 only')
    return args


def onnx_run(model: MRCNet, size: dict, image: torch.Tensor, folder: Path):
    """The model (of constructor arguments `size`) exported to `folder` once, run by ONNX Runtime on `image`."""
    path = folder / 'map.onnx'
    if not path.is_file():
        save_onnx(model, {'format': FORMAT, 'version': VERSION, 'model': model_spec('MRCNet', size)}, path)
    onnx_map = OnnxMap(path)
    return lambda: onnx_map(image)


def make_run(spec: str, model: MRCNet, image: torch.Tensor, tile: int | None, overlap: int):
    base, *modifiers = spec.split('+')
    memory_format = torch.channels_last if 'channels_last' in modifiers else torch.contiguous_format
    image = image.contiguous(memory_format=memory_format)

    def run() -> None:
        model.to(memory_format=memory_format)
        if base == 'official':
            with torch.no_grad():
                official_order_forward(model, image)
        else:
            with torch.inference_mode():
                restore(model, image, tile=tile, tile_overlap=overlap, amp='bf16' in modifiers)

    return run


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = dict(dim=args.dim, num_blocks=tuple(args.num_blocks), num_refinement_blocks=args.num_refinement_blocks)
    model = MRCNet(**size).to(device).eval()
    exports = tempfile.TemporaryDirectory(prefix='darcot-bench-')  # the ONNX file, removed at the end
    cases = [(s, None, args.variants) for s in args.sizes]
    cases += [(s, args.tile, [v for v in args.variants if v.startswith('fast')]) for s in args.tiled]
    figures: dict[str, dict] = {}
    print(f'MRCNet dim {args.dim} blocks {tuple(args.num_blocks)}, device {device}, {args.iters} timed runs each')
    print(f'{"image":<22} {"variant":<26} {"median s":>9} {"min s":>8} {"peak MB":>9}')
    for (width, height), tile, variants in cases:
        image = torch.rand(1, 3, height, width, device=device)
        runs = {spec: onnx_run(model, size, image, Path(exports.name)) if spec == 'onnx' else
                make_run(spec, model, image, tile, args.tile_overlap) for spec in variants}
        for run in runs.values():
            run()
        label = f'{width}x{height}' + (f' tile {tile}' if tile else '')
        for spec, f in time_alternating(runs, args.iters, device).items():
            figures[f'{label} {spec}'] = f
            print(f'{label:<22} {spec:<26} {f["median_s"]:>9.2f} {f["min_s"]:>8.2f} {f["peak_mb"]:>9.0f}')
        if 'official' in runs and 'fast' in runs:
            ratio = figures[f'{label} official']['median_s'] / figures[f'{label} fast']['median_s']
            print(f'{label:<22} fast / official speed-up: {ratio:.2f}x')
    exports.cleanup()
    write_json(args.json, {'cases': figures})
    return figures


if __name__ == '__main__':
    allocator.preload()  # freed memory kept for the next step: utils/allocator.py
    main()
