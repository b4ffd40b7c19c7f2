"""Benchmark of the training-data loader: patches per second, by DataLoader workers and decoded-image cache.

    python bench/data.py                          # the demo set (built if missing), and ../shared/data if present
    python bench/data.py --workers 0 2 --batches 100 --json data.json

The demo set trains all seven tokens; `../shared/data` (`DARCOT_SHARED_DATA` overrides) is laid out as a
training tree of links: Rain100H as Derain, CBSD68 as Denoise (noise made on the fly). The first batch of
each configuration (worker start-up) is not timed. Compare with the training step's patches per second
(batch / seconds per iteration, BENCHMARKS.md): the loader should deliver at least 10x that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_json  # noqa: E402
from data.demo import ensure_demo  # noqa: E402
from data.layouts import default_train_roots, shared_data  # noqa: E402
from data.tasks import ALL_TOKENS  # noqa: E402
from data.train_set import TrainDataset  # noqa: E402

SHARED = shared_data()


def shared_train_tree(root: Path) -> Path | None:
    """Links ../shared/data's Rain100H and CBSD68 into a training tree below `root`; None if absent."""
    if not (SHARED / 'Rain100H').is_dir() or not (SHARED / 'CBSD68').is_dir():
        return None
    (root / 'Derain').mkdir(parents=True)
    (root / 'Derain' / 'rainy').symlink_to(SHARED / 'Rain100H' / 'input', target_is_directory=True)
    (root / 'Derain' / 'gt').symlink_to(SHARED / 'Rain100H' / 'target', target_is_directory=True)
    (root / 'Denoise').symlink_to(SHARED / 'CBSD68', target_is_directory=True)
    return root


def patches_per_second(dataset: TrainDataset, batch: int, workers: int, batches: int) -> float:
    loader = DataLoader(dataset, batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    next(iterator)  # worker start-up and first decodes
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--demo_root', default='data/demo')
    parser.add_argument('--patch_size', type=int, default=128)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--batches', type=int, default=50, help='timed batches per configuration')
    parser.add_argument('--json')
    args = parser.parse_args(argv)

    demo_train, _ = ensure_demo(args.demo_root)
    with tempfile.TemporaryDirectory() as scratch:
        sets = {'demo': (default_train_roots(demo_train), list(ALL_TOKENS))}
        shared = shared_train_tree(Path(scratch) / 'shared')
        if shared is None:
            print(f'no Rain100H/CBSD68 under {SHARED}: the shared-data rows are skipped (set DARCOT_SHARED_DATA)')
        else:
            sets['shared'] = (default_train_roots(shared), ['derain', 'denoise_25'])
        figures = {}
        print(f'patch {args.patch_size}, batch {args.batch}, {args.batches} timed batches each')
        print(f'{"data":<8} {"workers":>7} {"cache":>6} {"patches/s":>10}')
        for name, (roots, tokens) in sets.items():
            for cache in (False, True):
                dataset = TrainDataset(roots, tokens, args.patch_size, replication={t: 1 for t in tokens},
                                       cache=cache)
                for workers in args.workers:
                    rate = patches_per_second(dataset, args.batch, workers, args.batches)
                    figures[f'{name} workers={workers} cache={cache}'] = {'patches_per_s': rate}
                    print(f'{name:<8} {workers:>7} {str(cache):>6} {rate:>10.1f}')
    write_json(args.json, {'loaders': figures})
    return figures


if __name__ == '__main__':
    main()
