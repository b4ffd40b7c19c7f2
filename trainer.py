"""Train DA-RCOT: flags (options.py) -> the training loop (utils/training.py), logs and checkpoints.

The flags are parsed and the C allocator chosen (utils/allocator.py) before torch is imported, so that
`--help` and a mistyped flag answer at once. The loop: see `utils.training`.

Writes, in `--ckpt_dir`: `last.pth` (every `--save_every` iterations, at every epoch end and when the run
stops), `epoch_NNNN.pth` (each epoch; the newest `--keep_epochs`, 5 by default, are kept), `best.pth` (best mean
validation PSNR); these resume with `--resume`. `last_map.pth` and `best_map.pth`, written with them, are
weights-only exports for `test.py` (with `--ema`: the averaged weights; `*_map_raw.pth` the raw ones).
Logs: see `utils.monitor`.

    python trainer.py --preset demo                               # the main job, a few minutes on a CPU
    python trainer.py --de_type derain dehaze denoise_15 denoise_25 denoise_50 --batchSize 2 --type all
    torchrun --nproc_per_node 2 trainer.py ...                     # several GPUs (gloo on CPUs)
"""

from __future__ import annotations

import sys

from options import TrainConfig, check_map_size, parse_flags
from utils import allocator


def largest_block_bytes(config: TrainConfig) -> int:
    """The largest activation of a training step: the map's feed-forward expansion (2 x int(dim x ffn)
    channels) at full patch resolution, float32, for the whole batch."""
    hidden = 2 * int(config.dim * config.ffn_expansion_factor)
    return config.batchSize * hidden * config.patch_size ** 2 * 4


def main(argv: list[str] | None = None) -> None:
    config = parse_flags(argv)
    if argv is None:  # a command of its own: it may restart once with the chosen allocator, before torch loads
        allocator.preload(allocator.default_choice(allocator.runs_on_cpu(config.device), largest_block_bytes(config)))
    check_map_size(config)
    from utils import distributed  # torch and everything that needs it, from here on
    from utils.training import train

    runtime = distributed.setup(config.device, config.ddp_timeout)
    try:
        with distributed.lost_peers_explained(runtime, config.ckpt_dir):
            train(config, runtime, ['python', 'trainer.py', *(sys.argv[1:] if argv is None else argv)])
    finally:
        distributed.teardown(runtime)


if __name__ == '__main__':
    main()
