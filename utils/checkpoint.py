"""Checkpoints that describe themselves, written atomically and read without running code.

This module is the one home of the training state: its layout, file names, writing, reading, the checks of a
resume and the restore. A training checkpoint is a plain dict:

    {'format': 'darcot', 'version': 2,
     'model': {'backbone': 'MRCNet', 'args': {...constructor arguments...},
               'critic': {'patch_size': int, 'width': int}},          # (no critic: --objective l1)
     'map': state_dict, 'critic': state_dict,
     'map_optimizer', 'critic_optimizer', 'map_scheduler', 'critic_scheduler': state dicts,
     'epoch': int, 'iteration': int (where a resumed run goes on), 'step': int, 'best_psnr': float,
     'rng': [one `utils.rng.capture_rng` per process], 'world_size': int, 'config': {...},
     'training': {'steps', 'planned_steps', 'stopped_by', 'precision', 'val_dir', 'val_split',
                  'chosen_by_validation'}}

Version 1 kept the critic's spec beside the model's (`critic_patch_size`, `critic_width`); it still resumes.
The files of a run's `--ckpt_dir`: `last.pth`, `epoch_NNNN.pth` (the newest `--keep_epochs`), `best.pth`, and
the weights-only exports of `last.pth`/`best.pth` for test.py (`export_maps`).

With `--ema DECAY` it also holds 'map_ema' (the averaged weights, a state_dict like 'map'), 'map_ema_updates'
(the map steps averaged) and 'ema_decay'.

An inference export keeps `format`, `version`, `model`, `map`, `config` and `training` only; `export_maps`
writes the averaged weights as `map` where a run keeps them (with `ema_decay`), and the raw ones beside. Files are
written to a temporary file in the same folder and renamed over the target, so a crash or a full disk never
leaves a partial checkpoint behind, and they are only ever read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from net import MODELS
from net.critic import OFFICIAL_WIDTH
from utils.atomic import write_atomically

FORMAT = 'darcot'
VERSION = 2
LAST = 'last.pth'
BEST = 'best.pth'
_EPOCH_FILE = re.compile(r'epoch_(\d+)\.pth$')


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
    return checked_checkpoint(read_weights_only(path, map_location), path)


def read_weights_only(path: str | Path, map_location: str | torch.device = 'cpu') -> object:
    """Whatever a file holds, read with `weights_only=True` (tensors and plain containers only, no code run)."""
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
    return state


def checked_checkpoint(state: object, path: str | Path) -> dict:
    """`state`, read from `path`, where it is a darcot checkpoint this code can read; otherwise an error."""
    if not isinstance(state, dict) or state.get('format') != FORMAT or 'map' not in state:
        raise CheckpointError(f'{path} is not a darcot checkpoint (no format/map entries); expected a file '
                              'written by trainer.py or by the official-checkpoint converter')
    if state.get('version', 0) > VERSION:
        raise CheckpointError(f'{path} has checkpoint version {state["version"]}; this code reads up to '
                              f'{VERSION}: update darcot')
    return state


def load_network_state(network: nn.Module, state_dict: dict[str, torch.Tensor], source: str = 'checkpoint'
                       ) -> LoadReport:
    """Loads official-named weights: keys of the official modules the network leaves out (its `leftover_prefixes`)
    are reported, anything else wrong is an error."""
    expected = network.state_dict()
    unused = getattr(network, 'leftover_prefixes', ())
    leftover = [key for key in state_dict if key not in expected and key.startswith(unused)]
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


def model_spec(backbone: str, args: dict, critic: dict | None = None) -> dict:
    """The self-description of the networks stored with their weights: the map's backbone and constructor
    arguments, and the critic's `{'patch_size', 'width'}` where there is one."""
    if backbone not in MODELS:
        raise CheckpointError(f'unknown backbone {backbone!r}; known: {", ".join(MODELS)}')
    return {'backbone': backbone, 'args': _plain(dict(args)), **({'critic': dict(critic)} if critic else {})}


def critic_spec(checkpoint: dict) -> dict | None:
    """The critic's `{'patch_size', 'width'}` of a checkpoint (version 1 kept them beside the model), or None."""
    if 'critic' in checkpoint['model']:
        return checkpoint['model']['critic']
    if 'critic_patch_size' in checkpoint:
        return {'patch_size': checkpoint['critic_patch_size'], 'width': checkpoint.get('critic_width', OFFICIAL_WIDTH)}
    return None


def build_map(checkpoint: dict) -> tuple[nn.Module, LoadReport]:
    """Rebuilds the transport map a checkpoint describes and loads its weights."""
    spec = checkpoint['model']
    if spec['backbone'] not in MODELS:
        raise CheckpointError(f'checkpoint names unknown backbone {spec["backbone"]!r}; known: {", ".join(MODELS)}')
    args = {key: tuple(value) if isinstance(value, list) else value for key, value in spec['args'].items()}
    try:
        network = MODELS[spec['backbone']](**args)
    except ValueError as error:  # sizes the network rejects, in the flags' words
        raise CheckpointError(f'{spec["backbone"]} cannot be built with {spec["args"]}: {error}') from error
    report = load_network_state(network, checkpoint['map'], source=f'{spec["backbone"]} weights')
    return network, report


def inference_export(checkpoint: dict, raw: bool = False) -> dict:
    """The weights-only export of a checkpoint (no critic, optimizers or RNG): as its `map` the averaged weights
    where the checkpoint keeps an EMA (marked by `ema_decay`), unless `raw`."""
    export = {key: checkpoint[key] for key in ('format', 'version', 'config', 'training') if key in checkpoint}
    export['model'] = {key: value for key, value in checkpoint['model'].items() if key != 'critic'}
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


def training_state(*, model: dict, networks: dict[str, nn.Module], optimizers: dict, schedulers: dict,
                   ema: nn.Module | None, ema_updates: int, ema_decay: float | None, position: dict,
                   rng: list[dict], world_size: int, config: dict, training: dict) -> dict:
    """The training checkpoint (module docstring) of a run: `networks` and their `optimizers` and `schedulers`
    by name (`map`, `critic`), the averaged map `ema` (or None), `position` ({epoch, iteration, step,
    best_psnr}), every process's `rng`, the resolved `config` and the `training` record."""
    state = {'format': FORMAT, 'version': VERSION, 'model': model,
             **{name: network.state_dict() for name, network in networks.items()},
             **{f'{name}_optimizer': optimizer.state_dict() for name, optimizer in optimizers.items()},
             **{f'{name}_scheduler': scheduler.state_dict() for name, scheduler in schedulers.items()},
             **position, 'rng': rng, 'world_size': world_size, 'config': config, 'training': training}
    if ema is not None:
        state.update(map_ema=ema.state_dict(), map_ema_updates=ema_updates, ema_decay=ema_decay)
    return state


def save_training(state: dict, ckpt_dir: str | Path, names: list[str]) -> None:
    """Writes `state` as each of `names` in `ckpt_dir`, and, right after `last.pth` and `best.pth`, the exports
    test.py reads (`last_map.pth`, `best_map.pth`), so that they are always as new as their checkpoint."""
    for name in names:
        save_checkpoint(state, Path(ckpt_dir) / name)
    for name in (LAST, BEST):
        if name in names:
            export_maps(state, ckpt_dir, Path(name).stem)


def restore_training(path: Path, model: dict, networks: dict[str, nn.Module], optimizers: dict, schedulers: dict,
                     ema: nn.Module | None, ema_decay: float | None, map_location: torch.device) -> dict:
    """Loads the training checkpoint `path` into the networks, optimizers, schedulers and the averaged map `ema`,
    after checking that it is one and that it was written by a run of the same `model` spec and `ema_decay` (the
    flags' names in every error); returns it (for its position and random states).

    Raises:
        CheckpointError: naming what differs and the flags to give.
    """
    state = load_checkpoint(path, map_location=map_location)
    # Checked first, so that an export is not reported as a missing critic.
    if any(key not in state for key in ('map_optimizer', 'map_scheduler', 'epoch', 'iteration', 'step', 'rng')):
        raise CheckpointError(f'{path} is not a training checkpoint of trainer.py (a weights-only export?); '
                              'resume from last.pth, best.pth or epoch_NNNN.pth')
    found = {key: value for key, value in state['model'].items() if key != 'critic'}
    expected = {key: value for key, value in model.items() if key != 'critic'}
    if _plain(found) != expected:
        raise CheckpointError(f'{path} holds {found}, but the flags ask for {expected}: give the same '
                              '--backbone/--dim/--num_blocks/--heads (or --preset), or another --ckpt_dir')
    critic, asked = critic_spec(state), model.get('critic')
    if asked is not None and (critic or {}).get('patch_size') != asked['patch_size']:
        raise CheckpointError(f'{path} has a critic for --patch_size {(critic or {}).get("patch_size")} (or none: '
                              f'--objective l1), not {asked["patch_size"]}; resume with the flags it was trained with')
    if asked is not None and critic['width'] != asked['width']:
        raise CheckpointError(f'{path} has a critic of --critic_width {critic["width"]}, not {asked["width"]}; resume '
                              'with the flags it was trained with')
    if state.get('ema_decay') != ema_decay:
        kept = f'an EMA of decay {state["ema_decay"]:g}' if state.get('ema_decay') else 'no EMA'
        wanted = f'--ema {ema_decay:g}' if ema_decay else 'none'
        raise CheckpointError(f'{path} keeps {kept}, but the flags ask for {wanted}; resume with the --ema it was '
                              'trained with')
    if ema is not None:
        load_network_state(ema, state['map_ema'], source=f'{path} (map_ema)')
    for name, network in networks.items():
        load_network_state(network, state[name], source=f'{path} ({name})')
        optimizers[name].load_state_dict(state[f'{name}_optimizer'])
        schedulers[name].load_state_dict(state[f'{name}_scheduler'])
    return state


def _plain(value: object) -> object:
    """Tuples -> lists, recursively: the form a checkpoint stores."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value] if isinstance(value, (list, tuple)) else value
