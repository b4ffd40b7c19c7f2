"""The golden fixtures of the official DA-RCOT implementation (`../shared/golden/darcot_reference.pt`, and
`promptir_reference.pt` for its PromptIR backbone).

`DARCOT_GOLDEN` overrides the path. Everything about the model comes from the file itself, so another
fixture of the same format with another config works unchanged.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import pytest
import torch

from net import Critic, MRCNet, PromptIR

DEFAULT_PATH = Path(__file__).resolve().parents[2] / 'shared' / 'golden' / 'darcot_reference.pt'


def golden_file(name: str) -> Path:
    """A file of the golden folder (the folder of `DARCOT_GOLDEN`'s file, default `../shared/golden`); skips the
    test, saying so, where it is absent."""
    path = Path(os.environ.get('DARCOT_GOLDEN', DEFAULT_PATH)).parent / name
    if not path.is_file():
        pytest.skip(f'no golden file {name} at {path.parent} (set DARCOT_GOLDEN to a file of that folder)')
    return path


def load_fixture() -> dict:
    path = Path(os.environ.get('DARCOT_GOLDEN', DEFAULT_PATH))
    if not path.is_file():
        pytest.skip(f'no golden fixture at {path} (set DARCOT_GOLDEN to its path)')
    # The fixture is the project's own file of plain tensors, dicts and floats; weights_only=True loads it.
    return torch.load(path, weights_only=True)


def filled_state(keys: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Every parameter filled from its official name and shape, as the fixture's README prescribes."""
    state = {}
    for name, shape in keys.items():
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        wave = torch.randn(shape, generator=generator, dtype=torch.float64)
        if len(shape) >= 2:
            state[name] = wave * math.sqrt(shape[0] / wave.numel())
        elif name.endswith('weight'):
            state[name] = 1 + 0.1 * wave
        else:
            state[name] = 0.1 * wave
    return state


def constructor_args(config: dict) -> dict:
    """A fixture's official constructor arguments (`*_config`) as ours."""
    return dict(inp_channels=config['inp_channels'], out_channels=config['out_channels'], dim=config['dim'],
                num_blocks=tuple(config['num_blocks']), num_refinement_blocks=config['num_refinement_blocks'],
                heads=tuple(config['heads']), ffn_expansion_factor=config['ffn_expansion_factor'],
                bias=config['bias'], layer_norm_type=config['LayerNorm_type'])


def filled_model(model: torch.nn.Module, keys: dict[str, tuple[int, ...]]) -> torch.nn.Module:
    """`model` in float64 with the filled weights of the official `keys` it has."""
    model = model.double()
    state = filled_state(keys)
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    return model


def build_mrcnet(fixture: dict) -> MRCNet:
    return filled_model(MRCNet(**constructor_args(fixture['mrcnet_config'])), fixture['mrcnet_keys'])


def load_promptir_fixture() -> dict:
    """`promptir_reference.pt` beside the DA-RCOT fixture (plain tensors, read with weights_only=True)."""
    return torch.load(golden_file('promptir_reference.pt'), weights_only=True)


def build_promptir(fixture: dict) -> PromptIR:
    return filled_model(PromptIR(**constructor_args(fixture['promptir_config'])), fixture['promptir_keys'])


def build_critic(fixture: dict) -> Critic:
    critic = Critic(fixture['critic_patch_size']).double()
    critic.load_state_dict(filled_state(fixture['critic_keys']))
    return critic


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()
