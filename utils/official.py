"""Released DA-RCOT checkpoints -> darcot checkpoints, without running code from the file.

The authors' files are `torch.save({"epoch", "Tnet", "Fnet"})` of whole modules whose classes live in their
module `model_res`. Unpickling such a file normally imports that module and can run any code the pickle
names, so it is read here with a restricted unpickler instead:

- only these globals are resolved: torch's tensor-rebuild helpers (`torch._utils._rebuild_tensor_v2`,
  `_rebuild_parameter`, ...), torch storage classes, dtypes, `torch.Size`, `torch.device`,
  `collections.OrderedDict` and `builtins.set`;
- the official classes of `model_res` (`OFFICIAL_CLASSES`) and `torch.nn` module classes become inert
  stand-ins that only keep the state they are given (nothing of theirs is imported or called);
- anything else (for instance `os.system`) is refused with `UnsafeCheckpointError` before it can run.

The file is torch's zip container: `<archive>/data.pkl` plus one `<archive>/data/<key>` record per storage,
referenced from the pickle by persistent ids `('storage', storage class, key, location, numel)`. It is read
with `zipfile` and our own `persistent_load`, both resting on that documented layout only.

From the stand-ins the state dicts of both networks are collected under their official names, the
network's configuration is inferred from the shapes (official files carry none), and a normal checkpoint is
built (`utils.checkpoint`). Leftover official modules are reported and dropped. As a command:

    python -m utils.official OFFICIAL.pth CONVERTED.pth

PromptIR's released weights are PyTorch Lightning checkpoints: a dict of plain values whose `state_dict` holds the
network under `net.`. `load_any_checkpoint` (test.py --ckpt) reads them by torch with `weights_only=True`
(`utils.checkpoint.read_weights_only`), strips the prefix and infers the configuration from the shapes in the same
way (`convert_lightning`); the command converts them too (read by the restricted unpickler).
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import sys
import zipfile
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

from net import Critic
from net.critic import OFFICIAL_WIDTH
from utils.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    LoadReport,
    build_map,
    checked_checkpoint,
    load_network_state,
    model_spec,
    read_weights_only,
    save_checkpoint,
)
from utils.export import SAFETENSORS_SUFFIX, load_safetensors

OFFICIAL_MODULE = 'model_res'
OFFICIAL_CLASSES = frozenset({
    'MRCNet', 'RCNet', 'F_net', 'TransformerBlock', 'Attention', 'FeedForward', 'LayerNorm', 'WithBias_LayerNorm',
    'BiasFree_LayerNorm', 'Downsample', 'Upsample', 'OverlapPatchEmbed',
})
# The plain globals a torch.save of modules needs, besides storage classes and dtypes; the rebuild helpers
# that an older or newer torch lacks are simply absent.
_ALLOWED_GLOBALS = {
    **{('torch._utils', name): getattr(torch._utils, name) for name in (
        '_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter',
        '_rebuild_parameter_with_state') if hasattr(torch._utils, name)},
    ('torch', 'Size'): torch.Size, ('torch', 'device'): torch.device, ('torch', 'UntypedStorage'): torch.UntypedStorage,
    ('collections', 'OrderedDict'): collections.OrderedDict, ('builtins', 'set'): set, ('__builtin__', 'set'): set,
}
DEFAULT_FFN_EXPANSION = 2.66  # Restormer's factor: the one the official MRCNet uses
LIGHTNING_PREFIX = 'net.'  # PromptIR's LightningModule holds its network as `self.net`


class UnsafeCheckpointError(CheckpointError):
    """A pickle that names a global outside the allow-list: it was not executed."""


class _InertModule:
    """Stand-in for an official or torch.nn module class: keeps the pickled state, runs nothing."""

    pickled_class = ''

    def __setstate__(self, state: dict) -> None:
        self.state = state


def _stand_in(module: str, name: str) -> type:
    return type(name, (_InertModule,), {'pickled_class': f'{module}.{name}'})


def _is_torch_nn_module(module: str, name: str) -> bool:
    if not module.startswith('torch.nn.modules.'):
        return False
    candidate = getattr(nn, name, None)  # a plain attribute lookup: nothing of the file runs
    return isinstance(candidate, type) and issubclass(candidate, nn.Module)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's `data.pkl` with only the allow-listed globals, storages read from the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.storages: dict[str, torch.UntypedStorage] = {}
        self.stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module == 'torch' and name.endswith('Storage') and hasattr(torch, name):
            return getattr(torch, name)
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module == OFFICIAL_MODULE and name in OFFICIAL_CLASSES) or _is_torch_nn_module(module, name):
            return self.stand_ins.setdefault((module, name), _stand_in(module, name))
        raise UnsafeCheckpointError(
            f'{self.source} asks to load {module}.{name}, which is not on the allow-list of an official DA-RCOT '
            'checkpoint (torch tensors and storages, OrderedDict, set, torch.nn and model_res modules). It was '
            'refused and nothing in the file was executed. Only convert checkpoints from a source you trust.')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
            raise UnsafeCheckpointError(f'{self.source}: unexpected persistent id {pid!r} in data.pkl')
        storage_class, key, _location, numel = pid[1:]
        dtype = torch.uint8 if storage_class is torch.UntypedStorage else storage_class._dtype
        if key not in self.storages:
            raw = bytearray(self.archive.read(f'{self.prefix}data/{key}'))
            self.storages[key] = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else \
                torch.UntypedStorage(0)
        storage = self.storages[key]
        expected = numel * torch.empty((), dtype=dtype).element_size()
        if storage.nbytes() != expected:
            raise CheckpointError(f'{self.source}: storage {key} holds {storage.nbytes()} bytes, expected {expected}')
        return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)


def read_official(path: str | Path) -> dict:
    """The unpickled top-level object of an official file, modules replaced by inert stand-ins.

    Raises:
        UnsafeCheckpointError: when the pickle names anything outside the allow-list (nothing is run).
        CheckpointError: when the file is not a torch zip checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist; check the path')
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(f'{path} is not a torch checkpoint in the zip format (torch >= 1.6) ({error}); '
                              'only those can be converted') from error
    with archive:
        pickles = [name for name in archive.namelist() if name.endswith('/data.pkl')]
        if len(pickles) != 1:
            raise CheckpointError(f'{path}: expected one data.pkl in the torch zip container, found {len(pickles)}')
        prefix = pickles[0][:-len('data.pkl')]
        if f'{prefix}byteorder' in archive.namelist() and archive.read(f'{prefix}byteorder') != \
                sys.byteorder.encode():
            raise CheckpointError(f'{path} was saved on a machine of the other byte order; convert it there')
        unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix, path)
        try:
            return unpickler.load()
        except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, TypeError) as error:
            raise CheckpointError(f'{path}: data.pkl could not be read ({error})') from error


def module_state(stand_in: _InertModule, prefix: str = '') -> dict[str, torch.Tensor]:
    """The state dict of an unpickled module tree, as `nn.Module.state_dict` would name it."""
    if not isinstance(stand_in, _InertModule):
        raise CheckpointError(f'expected a pickled module at {prefix or "the top"}, found {type(stand_in).__name__}')
    state = stand_in.state
    tensors = {}
    for name, parameter in state.get('_parameters', {}).items():
        if parameter is not None:
            tensors[prefix + name] = parameter.detach()
    transient = state.get('_non_persistent_buffers_set', set())
    for name, buffer in state.get('_buffers', {}).items():
        if buffer is not None and name not in transient:
            tensors[prefix + name] = buffer
    for name, child in state.get('_modules', {}).items():
        if child is not None:
            tensors.update(module_state(child, f'{prefix}{name}.'))
    return tensors


def _count(state: Mapping[str, torch.Tensor], stage: str) -> int:
    return len({key.split('.')[1] for key in state if key.startswith(f'{stage}.')})


def _ffn_expansion(state: Mapping[str, torch.Tensor], stages: tuple[str, ...]) -> float:
    """A factor f with int(channels * f) == hidden at every stage (GDFN widths), preferring Restormer's 2.66."""
    widths = [state[f'{stage}.0.ffn.project_out.weight'].shape[:2] for stage in stages]  # (channels, hidden)
    low = max(Fraction(hidden, channels) for channels, hidden in widths)
    high = min(Fraction(hidden + 1, channels) for channels, hidden in widths)

    def fits(factor: float) -> bool:
        return all(int(channels * factor) == hidden for channels, hidden in widths)

    if fits(DEFAULT_FFN_EXPANSION):
        return DEFAULT_FFN_EXPANSION
    for digits in range(1, 8):
        candidate = float(round(low + (high - low) / 2, digits))
        if fits(candidate):
            return candidate
    raise CheckpointError(f'no FFN expansion factor fits the GDFN widths {widths}')


def infer_map_config(state: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """(backbone, constructor arguments) of an official transport map (MRCNet, RCNet or PromptIR), read from its
    state-dict shapes."""
    branch = 'prompt3.prompt_param' if 'prompt3.prompt_param' in state else 'reslatent.0.attn.temperature'
    required = ('patch_embed.proj.weight', 'encoder_level1.0.attn.temperature', branch, 'output.weight')
    absent = [key for key in required if key not in state]
    if absent:
        raise CheckpointError(f'this transport map is not an MRCNet, RCNet or PromptIR (no {", ".join(absent)})')
    if branch.startswith('prompt3'):
        backbone = 'PromptIR'
    else:
        backbone = 'MRCNet' if any(key.startswith('resdecoder_level3.') for key in state) else 'RCNet'
    stages = ('encoder_level1', 'encoder_level2', 'encoder_level3', 'latent')
    embed = state['patch_embed.proj.weight']
    args = {
        'inp_channels': embed.shape[1],
        'out_channels': state['output.weight'].shape[0],
        'dim': embed.shape[0],
        'num_blocks': tuple(_count(state, stage) for stage in stages),
        'num_refinement_blocks': _count(state, 'refinement'),
        'heads': tuple(state[f'{stage}.0.attn.temperature'].shape[0] for stage in stages),
        'ffn_expansion_factor': _ffn_expansion(state, stages),
        'bias': 'encoder_level1.0.attn.qkv.bias' in state,
        'layer_norm_type': 'WithBias' if 'encoder_level1.0.norm1.body.bias' in state else 'BiasFree',
    }
    return backbone, args


def infer_critic_patch_size(state: Mapping[str, torch.Tensor]) -> int:
    """The critic's patch size P from its first linear layer: fc takes 512 (P/32)^2 = P^2/2 features."""
    if 'fc.weight' not in state:
        raise CheckpointError('the Fnet of this file has no fc.weight: not the DA-RCOT critic')
    patch_size = round((2 * state['fc.weight'].shape[1]) ** 0.5)
    if patch_size ** 2 != 2 * state['fc.weight'].shape[1]:
        raise CheckpointError(f'the critic\'s fc takes {state["fc.weight"].shape[1]} features: not P^2/2 for any P')
    return patch_size


def map_checkpoint(map_state: dict[str, torch.Tensor]) -> tuple[dict, LoadReport]:
    """A darcot checkpoint of an official transport map's state dict (configuration inferred from the shapes, every
    key and shape checked, the leftover official modules dropped) and what loading it left over."""
    backbone, args = infer_map_config(map_state)
    checkpoint = {'format': FORMAT, 'version': VERSION, 'model': model_spec(backbone, args), 'map': map_state}
    _, report = build_map(checkpoint)
    leftover = set(report.leftover)
    checkpoint['map'] = {key: value for key, value in map_state.items() if key not in leftover}
    return checkpoint, report


def convert_official(path: str | Path) -> tuple[dict, LoadReport]:
    """An official checkpoint (or a PromptIR Lightning one) as a darcot checkpoint (map, critic, epoch), and what
    loading the map left over.

    Raises:
        UnsafeCheckpointError, CheckpointError: see `read_official`; also when the networks do not fit.
    """
    path = Path(path)
    content = read_official(path)
    if is_lightning(content):  # PromptIR's release, given to the command
        return convert_lightning(content, path)
    if not isinstance(content, dict) or not isinstance(content.get('Tnet'), _InertModule):
        raise CheckpointError(f'{path} is not an official DA-RCOT checkpoint: expected a dict with a pickled '
                              f'"Tnet" module (and "Fnet", "epoch"), found {type(content).__name__}')
    checkpoint, report = map_checkpoint(module_state(content['Tnet']))
    checkpoint['source'] = f'converted from the official checkpoint {path.name} ({report})'
    if isinstance(content.get('epoch'), int):
        checkpoint['epoch'] = content['epoch']
    if content.get('Fnet') is not None:
        critic_state = module_state(content['Fnet'])
        patch_size = infer_critic_patch_size(critic_state)
        load_network_state(Critic(patch_size), critic_state, source=f'the Fnet of {path}')
        checkpoint['critic'] = critic_state
        spec = checkpoint['model']
        checkpoint['model'] = model_spec(spec['backbone'], spec['args'], {'patch_size': patch_size,
                                                                          'width': OFFICIAL_WIDTH})
    return checkpoint, report


def is_lightning(content: object) -> bool:
    """Whether `content` is a PyTorch Lightning checkpoint (a dict with `state_dict` and the Lightning version)."""
    return isinstance(content, dict) and isinstance(content.get('state_dict'), Mapping) and \
        'pytorch-lightning_version' in content


def convert_lightning(content: dict, path: str | Path) -> tuple[dict, LoadReport]:
    """A released PromptIR Lightning checkpoint (its network under `net.`, read with `weights_only=True`) as a darcot
    checkpoint; the configuration is inferred from the shapes, the optimizer and loop states are dropped.

    Raises:
        CheckpointError: when the state dict holds anything but one official transport map under `net.`.
    """
    path = Path(path)
    state = content['state_dict']
    outside = [key for key in state if not key.startswith(LIGHTNING_PREFIX)]
    if outside or not state:
        raise CheckpointError(f'{path} is a Lightning checkpoint, but its state_dict holds {len(outside)} keys outside '
                              f'{LIGHTNING_PREFIX!r} ({", ".join(outside[:4]) or "none at all"}): expected the '
                              'PromptIR LightningModule, whose network is `net`')
    checkpoint, report = map_checkpoint({key[len(LIGHTNING_PREFIX):]: value for key, value in state.items()})
    labels = {'epoch': 'epoch', 'global_step': 'global step', 'pytorch-lightning_version': 'Lightning'}
    found = ', '.join(f'{label} {content[key]}' for key, label in labels.items() if key in content)
    checkpoint['source'] = f'read from the Lightning checkpoint {path.name} ({found}; {report})'
    if isinstance(content.get('epoch'), int):
        checkpoint['epoch'] = content['epoch']
    return checkpoint, report


def load_any_checkpoint(path: str | Path) -> tuple[dict, str | None]:
    """A darcot checkpoint (a `.safetensors` file included), or an official DA-RCOT or PromptIR Lightning one
    converted on the fly; returns it and a note on conversion."""
    if Path(path).suffix == SAFETENSORS_SUFFIX:
        return load_safetensors(path), None
    try:
        content = read_weights_only(path)
    except CheckpointError as error:
        if not isinstance(error.__cause__, pickle.UnpicklingError):
            raise
        checkpoint, _ = convert_official(path)  # the restricted unpickler: refuses what is not allowed
        return checkpoint, checkpoint['source']
    if is_lightning(content):
        checkpoint, _ = convert_lightning(content, path)
        return checkpoint, checkpoint['source']
    return checked_checkpoint(content, path), None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m utils.official', description=__doc__.split('\n\n')[0])
    parser.add_argument('official', type=Path, help='the official checkpoint ({"epoch", "Tnet", "Fnet"} pickle)')
    parser.add_argument('output', type=Path, help='where to write the darcot checkpoint')
    args = parser.parse_args(argv)
    try:
        checkpoint, report = convert_official(args.official)
    except CheckpointError as error:
        parser.exit(1, f'error: {error}\n')
    save_checkpoint(checkpoint, args.output)
    spec = checkpoint['model']
    print(f'{args.output}: {spec["backbone"]} {spec["args"]}; map: {report}')
    if 'critic' in checkpoint:
        print(f'critic for {spec["critic"]["patch_size"]}x{spec["critic"]["patch_size"]} patches')
    if 'epoch' in checkpoint:
        print(f'epoch {checkpoint["epoch"]}')


if __name__ == '__main__':
    main()
