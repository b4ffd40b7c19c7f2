"""What makes a resumed run repeat an uninterrupted one: random states, per-iteration seeds, which file to resume.

Randomness inside an iteration (the gradient-penalty weights alpha, the clean patches an unpaired critic
sees) comes from `iteration_generator(seed, rank, step)`: a function of where the run is, not of what ran
before, so it needs no saved state. The global generators (torch, CUDA, NumPy, Python) are captured into
every checkpoint with `capture_rng` and put back with `restore_rng`, for anything else that draws from them.
The captured states are plain tensors, ints and floats, so checkpoints still load with `weights_only=True`.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

LAST = 'last.pth'
_EPOCH_FILE = re.compile(r'epoch_(\d+)\.pth$')


def epoch_file(epoch: int) -> str:
    """Name of the checkpoint written at the end of `epoch`."""
    return f'epoch_{epoch:04d}.pth'


def _epoch_files(ckpt_dir: str | Path) -> list[Path]:
    """The epoch_NNNN.pth files of `ckpt_dir`, oldest first."""
    epochs = sorted((int(match.group(1)), path) for path in Path(ckpt_dir).glob('epoch_*.pth')
                    if (match := _EPOCH_FILE.search(path.name)))
    return [path for _, path in epochs]


def prune_epoch_files(ckpt_dir: str | Path, keep: int) -> None:
    """Deletes all but the newest `keep` epoch_NNNN.pth files of `ckpt_dir`."""
    epochs = _epoch_files(ckpt_dir)
    for path in epochs[:max(len(epochs) - keep, 0)]:
        path.unlink()


def iteration_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """A CPU generator seeded by (seed, process, global step): the same numbers whenever that step runs."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def capture_rng() -> dict:
    """The states of the torch, CUDA, NumPy and Python global generators of this process."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {'keys': torch.from_numpy(keys.astype(np.int64)), 'position': int(position),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached_gaussian)},
        'python': {'version': version, 'internal': torch.tensor(internal, dtype=torch.int64),
                   'gauss_next': gauss_next},
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Puts back the generator states of `capture_rng`."""
    torch.set_rng_state(state['torch'])
    numpy_state = state['numpy']
    np.random.set_state(('MT19937', numpy_state['keys'].numpy().astype(np.uint32), numpy_state['position'],
                         numpy_state['has_gauss'], numpy_state['cached_gaussian']))
    python_state = state['python']
    random.setstate((python_state['version'], tuple(python_state['internal'].tolist()), python_state['gauss_next']))
    if 'cuda' in state and torch.cuda.is_available():
        if len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
        else:
            warnings.warn(f'the checkpoint holds CUDA generator states of {len(state["cuda"])} GPUs, this machine has '
                          f'{torch.cuda.device_count()}: CUDA random numbers will differ from the interrupted run',
                          RuntimeWarning, stacklevel=2)


def resume_path(resume: str, ckpt_dir: str | Path) -> Path | None:
    """The checkpoint `--resume` names: None for 'none'; for 'auto' the newest in `ckpt_dir`, if any."""
    if resume == 'none':
        return None
    if resume != 'auto':
        return Path(resume)
    ckpt_dir = Path(ckpt_dir)
    if (ckpt_dir / LAST).is_file():
        return ckpt_dir / LAST
    epochs = _epoch_files(ckpt_dir)
    return epochs[-1] if epochs else None
