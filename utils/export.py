"""Model files for use outside training: the transport map's weights as `.safetensors`, the map as ONNX.

    python -m utils.export --ckpt checkpoints/demo_MRCNet/last.pth --safetensors demo.safetensors
    python -m utils.export --ckpt checkpoints/demo_MRCNet/last.pth --onnx demo.onnx     # any image size
    python -m utils.export --ckpt ... --onnx demo.onnx --height 320 --width 480        # one fixed size

`--ckpt` takes what `test.py --ckpt` takes (a training checkpoint, a `*_map.pth` export, an official
checkpoint); a run that keeps an EMA of its weights exports the average, as its `last_map.pth` does. A
safetensors file holds tensors only and is read without unpickling anything. Its metadata (strings) carries
the model spec, so that the file describes the network it belongs to:

    format 'darcot', version, model (JSON: backbone and constructor arguments: dim, num_blocks, heads,
    num_refinement_blocks, ...), and where known config and training (JSON) and ema_decay.

`test.py --ckpt model.safetensors` reads it back through `load_safetensors`.

The ONNX graph is the whole map in float32 (torch's dynamo exporter, torch >= 2.6): the padding to a multiple of
8, both passes and the crop, with inputs `degraded` (N x 3 x H x W in [0, 1]) and outputs `restored` and
`embedding` (R4). By default height and width are dynamic (any image of at least 16 pixels a side); `--height
--width` fix them, and the size then goes into the file name. The export is checked at once: ONNX Runtime
restores a real photograph of another size (of the fixed size, for a fixed export) and the largest difference
to PyTorch's output is printed; above `CHECK_TOLERANCE` the command fails. The model spec and the training
record go into the file's metadata; `test.py --ckpt model.onnx` restores with ONNX Runtime (`OnnxMap`) through
the same evaluation code. Needs the optional packages of requirements-export.txt.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from data.image_io import to_tensor
from utils.atomic import write_bytes_atomically
from utils.checkpoint import FORMAT, VERSION, CheckpointError, build_map, inference_export

SAFETENSORS_SUFFIX = '.safetensors'
ONNX_SUFFIX = '.onnx'
# fp32 through a few hundred layers, in other kernels (ONNX Runtime against oneDNN): outputs in [0, 1] agree to
# about 1e-6; 1e-4 leaves room for deeper maps and flags a wrong graph, which is off by far more.
CHECK_TOLERANCE = 1e-4
MIN_SIDE = 16  # smallest side of a dynamic graph's input (it pads in one reflect step; the exporter takes >= 16)
_EXPORT_PACKAGES = 'pip install -r requirements-export.txt'


def save_safetensors(checkpoint: dict, path: str | Path) -> Path:
    """Writes the map's weights and its spec to `path`, atomically (a temporary file renamed over it)."""
    from safetensors.torch import save

    exported = inference_export(checkpoint)
    tensors = {name: value.detach().contiguous() for name, value in exported['map'].items()}
    return write_bytes_atomically(path, save(tensors, metadata=_metadata(exported)))


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
    return {**_spec_from_metadata(metadata, path, '--safetensors OUT.safetensors'), 'map': tensors}


def _import_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise CheckpointError(f'ONNX needs the optional packages onnx, onnxruntime and onnxscript ({error}): '
                              f'{_EXPORT_PACKAGES}') from error
    return onnx, onnxruntime


def onnx_path(path: str | Path, size: tuple[int, int] | None) -> Path:
    """`path`, with a fixed export's size (width x height) in its name unless the name already states it."""
    path = Path(path)
    if size is None:
        return path
    label = f'{size[1]}x{size[0]}'
    return path if label in path.stem else path.with_name(f'{path.stem}_{label}{path.suffix}')


def save_onnx(network: nn.Module, exported: dict, path: str | Path, size: tuple[int, int] | None = None) -> Path:
    """Exports `network` (in eval mode) to `path` (see the module docstring), with the fields of the inference
    export `exported` in its metadata (model spec; where present config, training, ema_decay); `size` (height,
    width) fixes the input size, None leaves it dynamic. Returns the path written."""
    onnx, _ = _import_onnx()
    if not hasattr(torch.compiler, 'is_exporting'):
        raise CheckpointError(f'the ONNX export needs torch 2.6 or newer (torch.export with dynamic shapes); this is '
                              f'torch {torch.__version__}')
    if size is None:
        example = torch.rand(2, 3, 37, 45)  # not a multiple of 8, nor a side of 0 or 1: nothing specialised
        dim = torch.export.Dim
        shapes = {'x': {0: dim('batch', min=1, max=256), 2: dim('height', min=MIN_SIDE, max=16384),
                        3: dim('width', min=MIN_SIDE, max=16384)}}
    else:
        example, shapes = torch.rand(1, 3, *size), None

    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        exported_file = Path(folder) / 'map.onnx'
        torch.onnx.export(network, (example,), exported_file, dynamo=True, dynamic_shapes=shapes, verbose=False,
                          external_data=False,  # one file, weights inside (up to protobuf's 2 GB)
                          input_names=['degraded'], output_names=['restored', 'embedding'])
        model = onnx.load(exported_file)
    for key, value in _metadata(exported).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return write_bytes_atomically(path, model.SerializeToString())


def _metadata(exported: dict) -> dict[str, str]:
    metadata = {'format': FORMAT, 'version': str(VERSION), 'model': json.dumps(exported['model'])}
    for key in ('config', 'training'):
        if key in exported:
            metadata[key] = json.dumps(exported[key])
    if 'ema_decay' in exported:
        metadata['ema_decay'] = repr(exported['ema_decay'])
    return metadata


def _spec_from_metadata(metadata: dict[str, str], path: Path, writer: str) -> dict:
    """The checkpoint fields (all but `map`) that `_metadata` wrote, or a CheckpointError naming `path`."""
    if metadata.get('format') != FORMAT or 'model' not in metadata:
        raise CheckpointError(f'{path} has no darcot model spec in its metadata (format and model), so the network '
                              f'it belongs to is unknown; write it with python -m utils.export --ckpt CKPT {writer}')
    if int(metadata.get('version', 0)) > VERSION:
        raise CheckpointError(f'{path} has checkpoint version {metadata["version"]}; this code reads up to {VERSION}: '
                              'update darcot')
    try:
        checkpoint = {'format': FORMAT, 'version': int(metadata['version']), 'model': json.loads(metadata['model'])}
        for key in ('config', 'training'):
            if key in metadata:
                checkpoint[key] = json.loads(metadata[key])
        if 'ema_decay' in metadata:
            checkpoint['ema_decay'] = float(metadata['ema_decay'])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f'{path}: its metadata is not what python -m utils.export writes ({error})') from error
    return checkpoint


class OnnxMap(nn.Module):
    """An exported map run by ONNX Runtime on the CPU, callable as the PyTorch maps are: x -> (T(x), R4).
    `checkpoint` holds the spec of its metadata (all but the weights); `size` is a fixed export's (height, width)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        _, onnxruntime = _import_onnx()
        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        except Exception as error:  # onnxruntime raises its own exception types
            raise CheckpointError(f'{path} is not an ONNX model ONNX Runtime can load: {error}') from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.checkpoint = _spec_from_metadata(metadata, self.path, '--onnx OUT.onnx')
        height, width = self.session.get_inputs()[0].shape[2:]
        self.size = (height, width) if isinstance(height, int) and isinstance(width, int) else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            raise ValueError(f'{self.path} was exported for {self.size[1]}x{self.size[0]} images only, got '
                             f'{x.shape[-1]}x{x.shape[-2]}: export it without --height/--width, or restore in tiles '
                             'of that size (--tile)')
        restored, embedding = self.session.run(None, {'degraded': x.detach().float().cpu().numpy()})
        return torch.from_numpy(restored).to(x.device), torch.from_numpy(embedding).to(x.device)


def check_onnx(path: Path, network: nn.Module, size: tuple[int, int] | None) -> tuple[tuple[int, int], float]:
    """Restores a real photograph with ONNX Runtime and with `network` (the PyTorch map exported to `path`);
    returns its (height, width) and the largest absolute difference of the two outputs."""
    import numpy as np
    import skimage.data

    photo = skimage.data.astronaut()
    height, width = size or (77, 101)  # not the traced size, nor a multiple of 8
    photo = np.pad(photo, ((0, max(0, height - 512)), (0, max(0, width - 512)), (0, 0)), mode='reflect')
    image = to_tensor(photo[:height, :width])[None]
    with torch.no_grad():
        expected, _ = network(image)
        actual, _ = OnnxMap(path)(image)
    return (height, width), (actual - expected).abs().max().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m utils.export', description=__doc__.split('\n\n')[0])
    parser.add_argument('--ckpt', type=Path, required=True,
                        help='a checkpoint of trainer.py, a *_map.pth export or an official checkpoint')
    parser.add_argument('--safetensors', type=Path, metavar='OUT',
                        help='write the weights and the model spec to this .safetensors file')
    parser.add_argument('--onnx', type=Path, metavar='OUT', help='export the map to this .onnx file and check it')
    parser.add_argument('--height', type=int, help='fixed input height of the ONNX graph (with --width)')
    parser.add_argument('--width', type=int, help='fixed input width of the ONNX graph (with --height)')
    parser.add_argument('--dynamic', action='store_true', help='dynamic height and width (the default)')
    args = parser.parse_args(argv)
    if not (args.safetensors or args.onnx):
        parser.error('give --safetensors OUT.safetensors, --onnx OUT.onnx, or both')
    if args.safetensors and args.safetensors.suffix != SAFETENSORS_SUFFIX:
        parser.error(f'--safetensors {args.safetensors}: the file name must end in {SAFETENSORS_SUFFIX}')
    if args.onnx and args.onnx.suffix != ONNX_SUFFIX:
        parser.error(f'--onnx {args.onnx}: the file name must end in {ONNX_SUFFIX}')
    if (args.height is None) != (args.width is None) or (args.dynamic and args.height is not None):
        parser.error('--height and --width fix the ONNX input size together; --dynamic (the default) leaves it free')
    size = None if args.height is None else (args.height, args.width)
    if size is not None and min(size) < MIN_SIDE:
        parser.error(f'--height/--width: at least {MIN_SIDE} pixels')
    from utils.official import load_any_checkpoint

    try:
        checkpoint, _ = load_any_checkpoint(args.ckpt)
        exported = inference_export(checkpoint)
        network = build_map(exported)[0].eval()  # also checks that the weights fit the spec they are written with
        spec = checkpoint['model']
        averaged = f', EMA decay {checkpoint["ema_decay"]:g}' if 'ema_decay' in checkpoint else ''
        if args.safetensors:
            save_safetensors(checkpoint, args.safetensors)
            print(f'{args.safetensors}: {spec["backbone"]} {spec["args"]}{averaged}')
        if args.onnx:
            written = save_onnx(network, exported, onnx_path(args.onnx, size), size)
            shape = 'any height and width' if size is None else f'{size[1]}x{size[0]} images only (width x height)'
            (height, width), difference = check_onnx(written, network, size)
            print(f'{written}: {spec["backbone"]} {spec["args"]}{averaged}; {shape}. ONNX Runtime against PyTorch '
                  f'on a {width}x{height} photograph: largest difference {difference:.2e}')
            if not difference <= CHECK_TOLERANCE:
                parser.exit(1, f'error: the ONNX graph differs from the PyTorch map by {difference:.2e} (more than '
                               f'{CHECK_TOLERANCE:g}); do not use {written}\n')
    except CheckpointError as error:
        parser.exit(1, f'error: {error}\n')


if __name__ == '__main__':
    main()
