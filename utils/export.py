"""Model files for use outside training: the transport map's weights as `.safetensors`.

    python -m utils.export --ckpt checkpoints/demo_MRCNet/last.pth --safetensors demo.safetensors

`--ckpt` takes what `test.py --ckpt` takes (a training checkpoint, a `*_map.pth` export, an official
checkpoint); a run that keeps an EMA of its weights exports the average, as its `last_map.pth` does. A
safetensors file holds tensors only and is read without unpickling anything. Its metadata (strings) carries
the model spec, so that the file describes the network it belongs to:

    format 'darcot', version, model (JSON: backbone and constructor arguments: dim, num_blocks, heads,
    num_refinement_blocks, ...), and where known config and training (JSON) and ema_decay.

`test.py --ckpt model.safetensors` reads it back through `load_safetensors`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from utils.checkpoint import FORMAT, VERSION, CheckpointError, inference_export

SAFETENSORS_SUFFIX = '.safetensors'


def save_safetensors(checkpoint: dict, path: str | Path) -> Path:
    """Writes the map's weights and its spec to `path`, atomically (a temporary file renamed over it)."""
    from safetensors.torch import save_file

    exported, path = inference_export(checkpoint), Path(path)
    metadata = {'format': FORMAT, 'version': str(VERSION), 'model': json.dumps(exported['model'])}
    for key in ('config', 'training'):
        if key in exported:
            metadata[key] = json.dumps(exported[key])
    if 'ema_decay' in exported:
        metadata['ema_decay'] = repr(exported['ema_decay'])
    tensors = {name: value.detach().contiguous() for name, value in exported['map'].items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def load_safetensors(path: str | Path) -> dict:
    """A darcot checkpoint dict (`format`, `version`, `model`, `map`, ...) from a file `save_safetensors` wrote."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'model file {path} does not exist; check the path given to --ckpt')
    try:
        with safe_open(str(path), framework='pt') as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f'{path} is not a readable safetensors file (truncated or corrupt?): {error}') from error
    if metadata.get('format') != FORMAT or 'model' not in metadata:
        raise CheckpointError(f'{path} has no darcot model spec in its metadata (format and model), so the network '
                              'it belongs to is unknown; write it with python -m utils.export --ckpt CKPT '
                              '--safetensors OUT.safetensors')
    if int(metadata.get('version', 0)) > VERSION:
        raise CheckpointError(f'{path} has checkpoint version {metadata["version"]}; this code reads up to {VERSION}: '
                              'update darcot')
    try:
        checkpoint = {'format': FORMAT, 'version': int(metadata['version']), 'model': json.loads(metadata['model']),
                      'map': tensors}
        for key in ('config', 'training'):
            if key in metadata:
                checkpoint[key] = json.loads(metadata[key])
        if 'ema_decay' in metadata:
            checkpoint['ema_decay'] = float(metadata['ema_decay'])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f'{path}: its metadata is not what python -m utils.export writes ({error})') from error
    return checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m utils.export', description=__doc__.split('\n\n')[0])
    parser.add_argument('--ckpt', type=Path, required=True,
                        help='a checkpoint of trainer.py, a *_map.pth export or an official checkpoint')
    parser.add_argument('--safetensors', type=Path, required=True, metavar='OUT',
                        help='write the weights and the model spec to this .safetensors file')
    args = parser.parse_args(argv)
    if args.safetensors.suffix != SAFETENSORS_SUFFIX:
        parser.error(f'--safetensors {args.safetensors}: the file name must end in {SAFETENSORS_SUFFIX}')
    from utils.checkpoint import build_map
    from utils.official import load_any_checkpoint

    try:
        checkpoint, _ = load_any_checkpoint(args.ckpt)
        build_map(inference_export(checkpoint))  # the weights fit the spec they are written with
    except CheckpointError as error:
        parser.exit(1, f'error: --ckpt: {error}\n')
    save_safetensors(checkpoint, args.safetensors)
    spec = checkpoint['model']
    averaged = f', EMA decay {checkpoint["ema_decay"]:g}' if 'ema_decay' in checkpoint else ''
    print(f'{args.safetensors}: {spec["backbone"]} {spec["args"]}{averaged}')


if __name__ == '__main__':
    main()
