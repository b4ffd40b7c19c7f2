"""Checkpoints that describe themselves, written atomically and read without running code.

A training checkpoint is a plain dict:

    {'format': 'darcot', 'version': 1,
     'model': {'backbone': 'MRCNet', 'args': {...constructor arguments...}},
     'map': state_dict, 'critic': state_dict, 'critic_patch_size': int, 'critic_width': int,
     'map_optimizer', 'critic_optimizer', 'map_scheduler', 'critic_scheduler': state dicts,
     'epoch': int, 'iteration': int, 'step': int, 'rng': {...}, 'config': {...},
     'training': {'steps', 'planned_steps', 'stopped_by', 'precision'}, ...}

With `--ema DECAY` it also holds 'map_ema' (the averaged weights, a state_dict like 'map'), 'map_ema_updates'
(the map steps averaged) and 'ema_decay'.

An inference export keeps `format`, `version`, `model`, `map`, `config` and `training` only; `export_maps`
writes the averaged weights as `map` where a run keeps them (with `ema_decay`), and the raw ones beside. Files are
written to a temporary file in the same folder and renamed over the target, so a crash or a full disk never
leaves a partial checkpoint behind, and they are only ever read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from net import LEFTOVER_PREFIXES, MODELS
from utils.atomic import write_atomically

FORMAT = 'darcot'
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with what to do about it."""


@dataclass
class LoadReport:
    """What `load_network_state` found beside the keys it loaded."""

    leftover: list[str] = field(default_factory=list)  # official keys of modules the forward never uses

    def __str__(self) -> str:
        if not self.leftover:
            return 'all keys matched'
        modules = sorted({key.split('.')[0] for key in self.leftover})
        return f'ignored {len(self.leftover)} keys of unused official modules ({", ".join(modules)})'


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Writes `state` to `path` atomically (`utils.atomic`): a complete file or the previous one, never a partial
    one."""
    try:
        return write_atomically(path, lambda handle: torch.save(state, handle))
    except OSError as error:
        raise OSError(error.errno, f'could not write checkpoint {path}: {error.strerror}; the previous checkpoint '
                                   'there (if any) is intact. Free disk space or pick another --ckpt_dir') from error


def load_checkpoint(path: str | Path, map_location: str | torch.device = 'cpu') -> dict:
    """Reads a checkpoint with `weights_only=True`; any other file gets an error that says what it is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist; check the path given to --ckpt/--resume')
    if path.stat().st_size == 0:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes): it was never written completely')
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f'{path} holds Python objects beyond plain tensors, so it was not loaded (loading it could run '
            f'code). If it is an official DA-RCOT checkpoint, convert it first: '
            f'python -m utils.official {path} converted.pth ({error})') from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:  # a short file can give EINVAL
        raise CheckpointError(f'{path} is not a readable checkpoint (truncated or corrupt?): {error}') from error
    if not isinstance(state, dict) or state.get('format') != FORMAT or 'map' not in state:
        raise CheckpointError(f'{path} is not a darcot checkpoint (no format/map entries); expected a file '
                              'written by trainer.py or by the official-checkpoint converter')
    if state.get('version', 0) > VERSION:
        raise CheckpointError(f'{path} has checkpoint version {state["version"]}; this code reads up to '
                              f'{VERSION}: update darcot')
    return state


def load_network_state(network: nn.Module, state_dict: dict[str, torch.Tensor], source: str = 'checkpoint'
                       ) -> LoadReport:
    """Loads official-named weights: leftover official modules are reported, anything else wrong is an error."""
    expected = network.state_dict()
    leftover = [key for key in state_dict if key not in expected and key.startswith(LEFTOVER_PREFIXES)]
    unexpected = [key for key in state_dict if key not in expected and key not in leftover]
    missing = [key for key in expected if key not in state_dict]
    misshaped = [f'{key}: {tuple(state_dict[key].shape)} in the file, {tuple(value.shape)} in the model'
                 for key, value in expected.items() if key in state_dict and state_dict[key].shape != value.shape]
    if missing or unexpected or misshaped:
        details = []
        for label, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
            if keys:
                details.append(f'{len(keys)} {label}: {", ".join(keys[:6])}{" ..." if len(keys) > 6 else ""}')
        raise CheckpointError(f'{source} does not fit {type(network).__name__}: ' + '; '.join(details)
                              + '. Was it trained with another --backbone or model size?')
    network.load_state_dict({key: value for key, value in state_dict.items() if key in expected})
    return LoadReport(leftover)


def model_spec(backbone: str, args: dict) -> dict:
    """The self-description of a transport map stored with its weights."""
    if backbone not in MODELS:
        raise CheckpointError(f'unknown backbone {backbone!r}; known: {", ".join(MODELS)}')
    return {'backbone': backbone, 'args': dict(args)}


def build_map(checkpoint: dict) -> tuple[nn.Module, LoadReport]:
    """Rebuilds the transport map a checkpoint describes and loads its weights."""
    spec = checkpoint['model']
    if spec['backbone'] not in MODELS:
        raise CheckpointError(f'checkpoint names unknown backbone {spec["backbone"]!r}; known: {", ".join(MODELS)}')
    args = {key: tuple(value) if isinstance(value, list) else value for key, value in spec['args'].items()}
    network = MODELS[spec['backbone']](**args)
    report = load_network_state(network, checkpoint['map'], source=f'{spec["backbone"]} weights')
    return network, report


def inference_export(checkpoint: dict, raw: bool = False) -> dict:
    """The weights-only export of a checkpoint (no critic, optimizers or RNG): as its `map` the averaged weights
    where the checkpoint keeps an EMA (marked by `ema_decay`), unless `raw`."""
    export = {key: checkpoint[key] for key in ('format', 'version', 'model', 'config', 'training') if key in checkpoint}
    averaged = 'map_ema' in checkpoint and not raw
    export['map'] = checkpoint['map_ema'] if averaged else checkpoint['map']
    if averaged or ('ema_decay' in checkpoint and 'map_ema' not in checkpoint):  # (the export of an export)
        export['ema_decay'] = checkpoint['ema_decay']
    return export


def export_for_inference(checkpoint: dict, path: str | Path, raw: bool = False) -> Path:
    """Writes `inference_export(checkpoint, raw)` to `path`."""
    return save_checkpoint(inference_export(checkpoint, raw), path)


def export_maps(checkpoint: dict, folder: str | Path, stem: str) -> None:
    """`<stem>_map.pth` for test.py (the averaged weights where the run keeps an EMA) and, with an EMA, the raw
    weights in `<stem>_map_raw.pth`."""
    export_for_inference(checkpoint, Path(folder) / f'{stem}_map.pth')
    if 'map_ema' in checkpoint:
        export_for_inference(checkpoint, Path(folder) / f'{stem}_map_raw.pth', raw=True)
