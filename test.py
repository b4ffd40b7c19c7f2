"""Evaluate a DA-RCOT transport map on the test sets, or restore any images without ground truth.

    python test.py --task {denoise,derain,dehaze,deblur,lowlight,all,<name>} --ckpt PATH [--test_dir data/Test]
        [--noise_sigma 15 25 50] [--save_dir results] [--protocol pad|official] [--tile N --tile_overlap M]
        [--y_channel] [--compare] [--save_inputs] [--device auto] [--amp auto|on|off] [--resume | --overwrite]
        [--dump_embeddings]
    python test.py --input FILE_OR_DIR --ckpt PATH --output DIR [--tile N] [--device auto]

Wiring only: checkpoint (ours, or an official DA-RCOT pickle or PromptIR Lightning file converted on the fly) +
test sets -> `evaluate()` -> `summary.json`, `results.md` (beside the paper's numbers), a printed table and images.
The metrics are in `utils.metrics`, the evaluation in `utils.evaluate`, tiling in `utils.inference`. The flags are
parsed, and the allocator chosen, before torch is imported: each function imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from data.image_io import list_images
from data.layouts import DataLayoutError
from data.test_sets import PROTOCOLS, TEST_TASKS, find_test_sets
from options import TILE_OVERLAP, HelpFormatter, add_amp_flags, add_device_flag, tile_problem
from utils import allocator

if TYPE_CHECKING:
    import torch

    from utils import precision


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--ckpt', required=True, type=Path,
                        help='checkpoint from trainer.py, its inference export, a .safetensors or .onnx model '
                             'file (python -m utils.export), an official DA-RCOT .pth or a PromptIR Lightning .ckpt')
    evaluation = parser.add_argument_group('evaluation on test sets')
    evaluation.add_argument('--task', default='all',
                            help=f'one of {", ".join(TEST_TASKS)}, all, or the name of any other paired folder '
                                 'of --test_dir (e.g. mixed)')
    evaluation.add_argument('--test_dir', type=Path, default=Path('data/Test'), help='test root (README layout)')
    evaluation.add_argument('--noise_sigma', type=int, nargs='+', default=[15, 25, 50],
                            help='noise levels of the denoising sets (any level, also unseen ones; the official '
                                 "tester's flag)")
    evaluation.add_argument('--sigma', type=int, nargs='+', dest='deprecated_sigma', metavar='SIGMA',
                            help='deprecated alias of --noise_sigma (trainer.py --sigma is the transport-cost weight)')
    evaluation.add_argument('--save_dir', type=Path, default=Path('results'),
                            help='where images, metrics.csv per set, summary.json and results.md go')
    evaluation.add_argument('--protocol', choices=PROTOCOLS, default='pad',
                            help='pad: full-size images (the network pads and crops back), denoising noise seeded '
                                 'per image; official: as the official testers (denoising: one seed-1850 noise '
                                 'stream over the sorted images, first row/column dropped where a side is not a '
                                 'multiple of 4; other sets trimmed bottom/right to a multiple of 8; LPIPS on '
                                 '[0, 1] inputs)')
    evaluation.add_argument('--y_channel', action='store_true', help='PSNR/SSIM on Y (BasicSR) instead of RGB')
    evaluation.add_argument('--compare', action='store_true',
                            help='also write degraded | restored | residual | target strips')
    evaluation.add_argument('--save_inputs', action='store_true',
                            help='also write each degraded input exactly as fed to the network (input/)')
    evaluation.add_argument('--dump_embeddings', action='store_true',
                            help='write the pooled residual embeddings (TensorBoard projector, 2-D plot)')
    rerun = evaluation.add_mutually_exclusive_group()
    rerun.add_argument('--resume', action='store_true',
                       help='continue an interrupted run: keep the images it finished')
    rerun.add_argument('--overwrite', action='store_true', help='replace the results of a previous run')
    photos = parser.add_argument_group('restoring images without ground truth')
    photos.add_argument('--input', type=Path, help='an image, or a folder of images (searched recursively)')
    photos.add_argument('--output', type=Path, help='where restored/ and residual/ go (with --input)')
    runtime = parser.add_argument_group('inference')
    runtime.add_argument('--tile', type=int, help='restore in overlapping tiles of this size (a multiple of 8)')
    runtime.add_argument('--tile_overlap', type=int, default=TILE_OVERLAP, help='pixels shared by neighbouring tiles')
    add_device_flag(runtime)
    add_amp_flags(runtime)
    runtime.add_argument('--no_progress', action='store_true', help='no progress bar')
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.deprecated_sigma is not None:
        warnings.warn('test.py --sigma is deprecated: use --noise_sigma (the official tester\'s name; '
                      'trainer.py --sigma is the transport-cost weight)', FutureWarning, stacklevel=2)
        args.noise_sigma = args.deprecated_sigma
    problem = tile_problem(args.tile, args.tile_overlap)
    if problem:
        parser.error(problem)
    if any(sigma <= 0 for sigma in args.noise_sigma):
        parser.error(f'--noise_sigma {args.noise_sigma}: noise levels must be positive (0-255 scale)')
    if args.dump_embeddings and args.resume:
        parser.error('--dump_embeddings needs every image restored again: use it without --resume')
    if (args.input is None) != (args.output is None):
        parser.error('--input and --output go together: restore the images of --input into --output')
    if args.input is not None and not args.input.exists():
        parser.error(f'--input {args.input} does not exist')


def load_map(path: Path, device: torch.device) -> tuple[torch.nn.Module, str, dict]:
    """The transport map of a checkpoint on `device`, a one-line description of it, and the checkpoint."""
    from utils.checkpoint import CheckpointError, build_map
    from utils.export import ONNX_SUFFIX, OnnxMap
    from utils.official import load_any_checkpoint

    try:
        if path.suffix == ONNX_SUFFIX:
            transport_map = OnnxMap(path)
            checkpoint, report = transport_map.checkpoint, 'run by ONNX Runtime on the CPU, float32'
            conversion = None
        else:
            checkpoint, conversion = load_any_checkpoint(path)
            transport_map, report = build_map(checkpoint)
    except CheckpointError as error:
        raise SystemExit(f'error: --ckpt: {error}') from error
    spec = checkpoint['model']
    averaged = f'; weights averaged, EMA decay {checkpoint["ema_decay"]:g}' if 'ema_decay' in checkpoint else ''
    described = f'{path} ({spec["backbone"]}, dim {spec["args"].get("dim")}{averaged}; {conversion or report})'
    return transport_map.to(device), described, checkpoint


def previous_results(save_dir: Path) -> list[Path]:
    """Files of an earlier run in `save_dir` that this run would overwrite or resume."""
    if not save_dir.is_dir():
        return []
    return sorted(save_dir.glob('summary.json')) + sorted(save_dir.rglob('metrics.csv'))


def input_images(source: Path) -> list[tuple[str, Path]]:
    """(output name, file) of the images to restore: one file, or a folder's images by relative path."""
    if source.is_file():
        return [(source.stem, source)]
    return [(path.relative_to(source).with_suffix('').as_posix(), path)
            for path in list_images(source, recursive=True)]


def restore_photos(args: argparse.Namespace, transport_map: torch.nn.Module, device: torch.device,
                   amp: bool) -> int:
    from utils.evaluate import restore_images

    sources = input_images(args.input)
    if not sources:
        raise SystemExit(f'error: --input {args.input} holds no image (png, jpg, bmp, tif, webp)')
    try:
        written, failed = restore_images(transport_map, sources, args.output, device=device, tile=args.tile,
                                         tile_overlap=args.tile_overlap, amp=amp, resume=args.resume,
                                         progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f'\ninterrupted: the images written so far in {args.output} are complete; rerun with --resume to '
              'finish', file=sys.stderr)
        return 130
    print(f'restored {len(written)} image(s) into {args.output}/restored (residual maps in {args.output}/residual)')
    for message in failed:
        print(f'skipped: {message}', file=sys.stderr)
    return 1 if failed else 0


def evaluate_sets(args: argparse.Namespace, transport_map: torch.nn.Module, device: torch.device,
                  described: str, chosen: precision.Precision, warnings_: list[str]) -> int:
    """Scores the map on the test sets of --task; `warnings_` (already printed) go into results.md too."""
    from utils.embeddings import write_embeddings
    from utils.evaluate import evaluate
    from utils.metrics import load_fid, load_lpips
    from utils.report import console_table, write_reports

    tasks = None if args.task == 'all' else [args.task]
    try:
        test_sets, missing = find_test_sets(args.test_dir, tasks, sigmas=tuple(args.noise_sigma),
                                            protocol=args.protocol)
    except DataLayoutError as error:
        raise SystemExit(f'error: --test_dir: {error}') from error
    for message in missing:
        print(f'not found: {message}')
    if not test_sets:
        raise SystemExit(f'error: no test set for --task {args.task} in {args.test_dir}; see the layout above '
                         '(python -m data.demo builds a small one under data/demo)')
    earlier = previous_results(args.save_dir)
    if earlier and not (args.resume or args.overwrite):
        raise SystemExit(f'error: --save_dir {args.save_dir} already holds results ({earlier[0]}); pass --resume '
                         'to continue that run, --overwrite to replace it, or choose another --save_dir')
    lpips, fid = load_lpips(device, official=args.protocol == 'official'), load_fid(device)
    embeddings = [] if args.dump_embeddings else None
    try:
        records = evaluate(transport_map, test_sets, device=device, tile=args.tile,
                           tile_overlap=args.tile_overlap, y_channel=args.y_channel, amp=chosen.amp,
                           save_dir=args.save_dir, compare=args.compare, save_inputs=args.save_inputs,
                           resume=args.resume,
                           progress=not args.no_progress, lpips=lpips, fid=fid, embeddings=embeddings)
    except KeyboardInterrupt:
        print(f'\ninterrupted: the images and metrics.csv rows written so far in {args.save_dir} are complete; '
              'rerun with --resume to finish', file=sys.stderr)
        return 130
    records = [{**record, 'precision': chosen.dtype} for record in records]
    summary, markdown = write_reports(records, args.save_dir, described, warnings_)
    print(console_table(records))
    for metric, reason in sorted({item for record in records for item in record['not_computed'].items()}):
        print(f'{metric.upper()} not computed: {reason}')
    print(f'wrote {summary}, {markdown} and the images of each set below {args.save_dir}')
    if embeddings is not None:
        written = write_embeddings(embeddings, args.save_dir / 'embeddings')
        print('embeddings: ' + ', '.join(str(path) for path in written))
    return 0


def stopped_early(checkpoint: dict) -> str | None:
    """A warning where the checkpoint's training stopped before its planned iterations (`--max_minutes`)."""
    training = checkpoint.get('training') or {}
    steps, planned = training.get('steps'), training.get('planned_steps')
    if steps is None or planned is None or steps >= planned:
        return None
    return (f'warning: this map was trained for {steps} of its {planned} planned iterations '
            f'({training.get("stopped_by") or "the run was stopped"}): these results are not those of the full run')


def chosen_on_tested_folder(checkpoint: dict, test_dir: Path) -> str | None:
    """A warning where the checkpoint was kept as its run's best on the folder being tested (or one inside it, or
    around it): choosing weights on the test set inflates every number against the paper's last-epoch ones."""
    training = checkpoint.get('training') or {}
    if not training.get('chosen_by_validation') or not training.get('val_dir'):
        return None
    chosen_on, tested = Path(training['val_dir']).resolve(), test_dir.resolve()
    if chosen_on != tested and chosen_on not in tested.parents and tested not in chosen_on.parents:
        return None
    return (f'warning: this map was kept as the best of its run by validation on {chosen_on}, which holds the test '
            'sets scored here: the weights were chosen on the test set, so these numbers are biased upward '
            "against the paper's (last-epoch weights). Score last_map.pth, or validate on held-out training pairs "
            '(trainer.py --val_split)')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if argv is None:  # a command of its own: the allocator is chosen before torch loads (utils/allocator.py)
        allocator.preload('retain' if allocator.runs_on_cpu(args.device) else 'system')  # full-size images: big blocks
    from utils import precision
    from utils.distributed import pick_device
    from utils.export import ONNX_SUFFIX
    from utils.inference import InferenceMemoryError

    try:
        device = pick_device(args.device)
    except ValueError as error:
        raise SystemExit(f'error: {error}') from error
    transport_map, described, checkpoint = load_map(args.ckpt, device)
    found = [stopped_early(checkpoint)] + ([] if args.input else [chosen_on_tested_folder(checkpoint, args.test_dir)])
    found_warnings = [warning for warning in found if warning]
    for warning in found_warnings:
        print(warning)
    chosen = precision.choose('off' if args.ckpt.suffix == ONNX_SUFFIX else args.amp, device)  # ONNX: float32
    described = f'{described}; {chosen.describe()}'
    print(f'transport map: {described} on {device}')
    try:
        if args.input is not None:
            return restore_photos(args, transport_map, device, chosen.amp)
        return evaluate_sets(args, transport_map, device, described, chosen, found_warnings)
    except InferenceMemoryError as error:
        raise SystemExit(f'error: {error}') from error


if __name__ == '__main__':
    sys.exit(main())
