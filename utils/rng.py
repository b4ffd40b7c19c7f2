"""What makes a resumed run repeat an uninterrupted one: random states and per-iteration seeds.

Randomness inside an iteration (the gradient-penalty weights alpha, the clean patches an unpaired critic
sees) comes from `iteration_generator(seed, rank, step)`: a function of where the run is, not of what ran
before, so it needs no saved state. The global generators (torch, CUDA, NumPy, Python) are captured into
every checkpoint with `capture_rng` and put back with `restore_rng`, for anything else that draws from them.
The captured states are plain tensors, ints and floats, so checkpoints still load with `weights_only=True`.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import torch


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
