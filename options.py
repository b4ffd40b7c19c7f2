"""Command-line flags of `trainer.py` -> a typed, validated `TrainConfig`.

The flag names are the official DA-RCOT ones (`--batchSize`, `--nEpochs`, `--pairnum`, `--Sigma`, `--sigma`,
`--de_type`, `--patch_size`, `--type`, `--gpus`, `--backbone`, `--step`, `--resume`, ...), so the official
README's training commands run unchanged. A `--preset` fills in defaults (model size, patch size, batch size,
learning rate, ...); any flag given explicitly wins over the preset. Nothing is parsed at import: call
`parse_args(argv)`. Invalid values raise `SystemExit` with a message that names the flag. torch is imported
only once the flags have parsed, so that `--help` and a mistyped flag answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

from data.layouts import default_train_roots
from data.tasks import ALL_TOKENS, DE_TYPES, THREE_TASK, parse_de_type, parse_replication
from data.train_lists import list_paths

# The rows of net.MODELS, named here so that parsing needs no torch.
BACKBONES = ('MRCNet', 'Restormer', 'RCNet', 'PromptIR')
AMP_CHOICES = ('auto', 'on', 'off')  # utils.precision says what `auto` picks on which hardware

TRAIN_ROOT_FLAGS = {  # training-root key -> flag that overrides it
    'denoise': 'denoise_dir', 'derain': 'derain_dir', 'dehaze': 'dehaze_dir', 'deblur': 'deblur_dir',
    'lowlight': 'lowlight_dir', 'single': 'single_dir',
}

# Defaults of each preset; a flag given on the command line overrides them. `paper` is the paper's setting.
PRESETS: dict[str, dict] = {
    'paper': {},
    'small': dict(dim=24, num_blocks=(2, 3, 3, 4), num_refinement_blocks=2),
    # An iteration in well under a second on a laptop CPU: for smoke tests and debugging.
    'tiny': dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, patch_size=32, threads=0),
    # The README's main job (`python -m data.demo` builds its data): all five tasks (noise at the three levels), the
    # full objective, 444 iterations. Sized by work, for a 2-core CPU in float32 (an AVX2 CPU, where --amp auto
    # keeps float32): a reduced map and critic on 32 x 32 patches, starting next to the identity, Adam with the
    # map's lr far above lr/2 (the critic's stays the official 1e-4), both annealed to 0. --max_minutes is a
    # safety bound only; test.py says so when it stopped the run. STUDY.md has the runs behind these values.
    'demo': dict(dim=16, num_blocks=(1, 1, 2, 4), num_refinement_blocks=1, patch_size=32, batchSize=4,
                 critic_width=16, optimizer='Adam', lr=1e-4, map_lr=2e-3, identity_init=True, nEpochs=6,
                 lr_schedule='cosine', de_type=list(ALL_TOKENS),
                 data_root='data/demo/Train', data_lists='none', type='demo', cache=True, threads=0,
                 replication=['denoise_15=3', 'denoise_25=3', 'denoise_50=3', 'derain=2', 'dehaze=2', 'deblur=3',
                              'lowlight=1'],
                 save_every=100, keep_epochs=1, image_every=50, log_every=5, max_minutes=6.5),
}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Plain values only, so it can be stored in a checkpoint."""

    # The paper's flags.
    batchSize: int = 2  # per process; with torchrun the global batch is batchSize x processes
    nEpochs: int = 50
    lr: float = 1e-4  # the critic's learning rate
    map_lr: float | None = None  # the map's learning rate; None: lr / 2, as the official code
    step: int = 15  # both learning rates x0.1 every `step` epochs
    lr_schedule: str = 'step'  # 'step' (the official) or 'cosine' (annealed to 0 over nEpochs; `step` unused)
    optimizer: str = 'RMSprop'
    pairnum: int = 10_000_000  # paired samples per epoch; iterations after pairnum // batch are unpaired
    Sigma: float = 10000.0
    sigma: float = 1.0
    de_type: tuple[str, ...] = THREE_TASK
    patch_size: int = 128
    type: str = 'all'  # run tag: names the default log and checkpoint folders
    device: str = 'auto'  # --device, or the official --gpus (utils.distributed.pick_device)
    backbone: str = 'MRCNet'
    resume: str = 'none'
    threads: int = 4
    seed: int = 0
    # The transport map's size.
    dim: int = 48
    num_blocks: tuple[int, ...] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, ...] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    identity_init: bool = False  # shrink the map's output convolution: training starts next to T(x) = x
    critic_width: int = 64  # channels of the critic's first convolution (the official 64)
    # Objective.
    objective: str = 'ot'  # 'ot': the full DA-RCOT objective; 'l1': the paired L1 term alone (an ablation)
    no_fourier: bool = False
    critic_on_targets: bool = False  # unpaired critic sees the batch's own targets, as the official code
    ema: float | None = None  # decay of an exponential moving average of the map's weights; None: none (official)
    # Data.
    data_root: str = 'data/Train'
    train_roots: dict[str, str] = dataclasses.field(default_factory=dict)
    replication: dict[str, int] = dataclasses.field(default_factory=dict)
    data_lists: str = 'official'  # 'official', 'none' or a folder of lists (data.train_lists)
    cache: bool = False
    skip_unreadable: bool = False
    # Validation.
    val_dir: str | None = None
    val_split: int = 0  # clean images per task held out of training and validated on (0: none)
    val_tasks: tuple[str, ...] = ()
    val_every: int = 0  # iterations between validations; 0: at the end of every epoch
    val_tile: int | None = None
    # Output and bounds.
    log_dir: str = ''
    ckpt_dir: str = ''
    save_every: int = 1000
    keep_epochs: int | None = 5  # epoch_NNNN.pth files kept (the newest; ~650 MB each at paper size); None: all
    log_every: int = 10
    image_every: int = 500
    max_iters: int | None = None
    max_minutes: float | None = None
    max_bad_iters: int = 20
    # Performance.
    amp: str = 'auto'  # 'auto', 'on' or 'off' (utils.precision)
    compile: bool = False
    checkpointing: bool = False
    ddp_timeout: float = 30.0
    preset: str = 'paper'

    @property
    def model_args(self) -> dict:
        """Constructor arguments of the transport map."""
        return dict(dim=self.dim, num_blocks=tuple(self.num_blocks), num_refinement_blocks=self.num_refinement_blocks,
                    heads=tuple(self.heads), ffn_expansion_factor=self.ffn_expansion_factor)

    def to_dict(self) -> dict:
        """A plain dict (lists, not tuples) that `torch.load(weights_only=True)` and JSON both read back."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be 0 or more, got {text}')
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be a positive number, got {text}')
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f'must be a finite number >= 0, got {text}')
    return value


def _count_or_all(text: str) -> int | None:
    return None if text == 'all' else _non_negative_int(text)


def _decay(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f'must be a number between 0 and 1 (e.g. 0.999), got {text}')
    return value


PRESET_USES = {  # what each preset is for, shown by --help beside what it sets
    'paper': "the paper's setting (the official defaults)",
    'small': 'a smaller map, for a quick run on one GPU',
    'tiny': 'an iteration in well under a second on a laptop CPU: smoke tests and debugging',
    'demo': "the README's main job, on the built-in demo data (python -m data.demo)",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The --help of trainer.py and test.py: each flag's default after its help (none where it has no value or
    its help says what unset means), descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or 'default:' in (action.help or ''):
            return action.help or ''
        return super()._get_help_string(action)


def _as_flags(values: dict) -> str:
    """A preset's values as the flags that would set them."""
    def flag(key: str, value) -> str:
        if isinstance(value, bool):
            return f'--{key}' if value else f'--no-{key}'
        shown = ' '.join(map(str, value)) if isinstance(value, (list, tuple)) else value
        return f'--{key} {shown}'
    return ' '.join(flag(key, value) for key, value in values.items())


def _preset_description() -> str:
    entries = [f'{name}: {PRESET_USES[name]}. Sets ' + (_as_flags(values) or 'nothing: the defaults below')
               for name, values in PRESETS.items()]
    wrapped = [textwrap.fill(entry, width=100, subsequent_indent='    ') for entry in entries]
    return ('A preset sets the defaults of the flags it names; a flag given explicitly wins. '
            '`--preset NAME --help`\nshows the defaults under NAME.\n' + '\n'.join(wrapped))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Train DA-RCOT (degradation-aware residual-conditioned optimal '
                                                 'transport) for all-in-one image restoration.',
                                     formatter_class=HelpFormatter)
    default = TrainConfig()
    presets = parser.add_argument_group('presets', _preset_description())
    presets.add_argument('--preset', choices=tuple(PRESETS), default='paper', help='the preset to start from')
    paper = parser.add_argument_group('the paper\'s flags')
    paper.add_argument('--batchSize', type=_positive_int, default=default.batchSize,
                       help='patches per iteration and process')
    paper.add_argument('--nEpochs', type=_positive_int, default=default.nEpochs,
                       help='last epoch (epochs count from 1)')
    paper.add_argument('--lr', type=_positive_float, default=default.lr,
                       help="the critic's learning rate")
    paper.add_argument('--map_lr', type=_positive_float, default=None,
                       help="the map's learning rate (default: lr/2, as the official code)")
    paper.add_argument('--step', type=_positive_int, default=default.step, help='both lrs x0.1 every STEP epochs')
    paper.add_argument('--lr_schedule', choices=('step', 'cosine'), default=default.lr_schedule,
                       help='step: x0.1 every --step epochs (official); cosine: both lrs annealed to 0 over --nEpochs')
    paper.add_argument('--optimizer', choices=('RMSprop', 'Adam'), default=default.optimizer,
                       help='the optimiser of the map and the critic (the official RMSprop, torch defaults)')
    paper.add_argument('--pairnum', type=_non_negative_int, default=default.pairnum,
                       help='paired samples per epoch; later iterations are unpaired (0: all unpaired)')
    paper.add_argument('--Sigma', type=_non_negative_float, default=default.Sigma, help='weight of the paired L1 term')
    paper.add_argument('--sigma', type=_non_negative_float, default=default.sigma, help='weight of the transport cost')
    paper.add_argument('--de_type', nargs='+', default=list(default.de_type),
                       help=f'degradations to train on: {" ".join(DE_TYPES)}')
    paper.add_argument('--patch_size', type=_positive_int, default=default.patch_size,
                       help='training patch size, a multiple of 32 (the critic needs it)')
    paper.add_argument('--type', default=default.type, help='run tag: names the default log and checkpoint folders')
    add_device_flag(paper, official_alias=True)
    paper.add_argument('--backbone', choices=BACKBONES, default=default.backbone,
                       help='the transport map: MRCNet (the paper), RCNet (the RCOT map: conditioned at the latent '
                            'only), PromptIR (the official third backbone; needs --dim 48), Restormer (one pass, no '
                            'residual conditioning; not in the official code)')
    paper.add_argument('--resume', nargs='?', const='auto', default=default.resume, metavar='{auto,none,PATH}',
                       help='continue an interrupted run: alone or auto, from the newest checkpoint in --ckpt_dir (if '
                            'any); or from a checkpoint PATH; none starts afresh')
    paper.add_argument('--threads', type=_non_negative_int, default=default.threads, help='data loader workers')
    paper.add_argument('--seed', type=int, default=default.seed,
                       help='seeds the weights, the patches, the noise and --val_split')

    size = parser.add_argument_group('size of the transport map')
    size.add_argument('--dim', type=_positive_int, default=default.dim,
                      help='channels of the first level (x2 per level)')
    size.add_argument('--num_blocks', type=_positive_int, nargs=4, default=list(default.num_blocks),
                      help='transformer blocks at each of the four levels')
    size.add_argument('--num_refinement_blocks', type=_positive_int, default=default.num_refinement_blocks,
                      help='transformer blocks of the refinement stage after the decoder')
    size.add_argument('--heads', type=_positive_int, nargs=4, default=list(default.heads),
                      help='attention heads at each level (each must divide its channels)')
    size.add_argument('--ffn_expansion_factor', type=_positive_float, default=default.ffn_expansion_factor,
                      help='hidden channels of the gated feed-forward network, as a multiple of its input')
    size.add_argument('--identity_init', action=argparse.BooleanOptionalAction, default=default.identity_init,
                      help="shrink the map's output convolution 100-fold, so that training starts next to the "
                           'identity T(x) = x (not in the official code; short runs learn faster)')

    size.add_argument('--critic_width', type=_positive_int, default=default.critic_width,
                      help="channels of the critic's first convolution, doubling to 8x (the official 64)")

    objective = parser.add_argument_group('objective')
    objective.add_argument('--objective', choices=('ot', 'l1'), default=default.objective,
                           help="'ot': the DA-RCOT objective; 'l1': the paired L1 term alone, no critic (ablation)")
    objective.add_argument('--no_fourier', action='store_true', help='drop the Fourier transport cost (ablation)')
    objective.add_argument('--critic_on_targets', action='store_true',
                           help="unpaired iterations show the critic the batch's own targets, as the official "
                                'code does (it leaks the pairing); by default it sees independent clean patches')

    objective.add_argument('--ema', type=_decay, default=None, metavar='DECAY',
                           help="keep an exponential moving average of the map's weights (e.g. 0.999), updated "
                                'after every applied map step; validation, best.pth and last_map.pth use it '
                                '(last_map_raw.pth: the raw weights). Default: none, as the official code')

    data = parser.add_argument_group('data')
    data.add_argument('--data_root', default=default.data_root, help='training root holding every task folder')
    for key, flag in TRAIN_ROOT_FLAGS.items():
        data.add_argument(f'--{flag}', default=None, help=f'{key} training folder (default: under --data_root)')
    data.add_argument('--replication', nargs='+', default=[],
                      help='per-token repeats in an epoch, e.g. derain=100 dehaze=2 (default: the official ones)')
    data.add_argument('--data_lists', default=default.data_lists, metavar='{official,none,DIR}',
                      help='which files the tasks with a training list (noise, rain, haze) train on. official: '
                           'only those named in data/lists, as the paper; none: every image of their folders; DIR: '
                           'the lists of a folder laid out as data/lists, every list a --de_type task needs must be '
                           'there (else an error). Listed names with no file and unlisted files are counted and '
                           'printed at start; blur, low light and single always train on their whole folder')
    data.add_argument('--cache', action=argparse.BooleanOptionalAction, default=default.cache,
                      help='keep decoded training images in memory')
    data.add_argument('--skip_unreadable', action='store_true', help='skip unreadable training images with a warning')

    val = parser.add_argument_group('validation (at full image size, through utils.evaluate)')
    val.add_argument('--val_dir', default=None,
                     help='a root of held-out pairs in the test layout to validate on (not the test set: best.pth '
                          'chosen on it inflates the test numbers)')
    val.add_argument('--val_split', type=_non_negative_int, default=default.val_split, metavar='N',
                     help='hold N clean images per task (and all their pairs) out of training, chosen by --seed, and '
                          'validate on one pair of each (instead of --val_dir)')
    val.add_argument('--val_tasks', nargs='+', default=[],
                     help='test tasks to validate on (default: the tasks of --de_type)')
    val.add_argument('--val_every', type=_non_negative_int, default=default.val_every,
                     help='iterations between validations (0: at the end of every epoch)')
    val.add_argument('--val_tile', type=int, default=None,
                     help=f'validate in tiles of this size (a multiple of 8; {TILE_OVERLAP} pixels shared)')

    out = parser.add_argument_group('output and bounds')
    out.add_argument('--log_dir', default='', help='TensorBoard and text logs (default: runs/<type>_<backbone>)')
    out.add_argument('--ckpt_dir', default='', help='checkpoints (default: checkpoints/<type>_<backbone>)')
    out.add_argument('--save_every', type=_positive_int, default=default.save_every,
                     help='iterations between last.pth saves (also mid-epoch)')
    out.add_argument('--keep_epochs', type=_count_or_all, default=default.keep_epochs,
                     help='keep only the newest N epoch_NNNN.pth checkpoints (0: write none; all: keep every '
                          'one; a paper-size file is about 650 MB)')
    out.add_argument('--log_every', type=_positive_int, default=default.log_every,
                     help='iterations between TensorBoard scalars')
    out.add_argument('--image_every', type=_positive_int, default=default.image_every,
                     help='iterations between TensorBoard image grids')
    out.add_argument('--max_iters', type=_positive_int, default=None, help='stop after this many iterations in all')
    out.add_argument('--max_minutes', type=_positive_float, default=None, help='stop after this many minutes')
    out.add_argument('--max_bad_iters', type=_positive_int, default=default.max_bad_iters,
                     help='stop after this many consecutive iterations with a non-finite loss or gradient')

    perf = parser.add_argument_group('performance')
    add_amp_flags(perf, default.amp)
    perf.add_argument('--compile', action='store_true', help='torch.compile the transport map')
    perf.add_argument('--checkpointing', action='store_true',
                      help='activation checkpointing of the transformer blocks: less memory, same numbers')
    perf.add_argument('--ddp_timeout', type=_positive_float, default=default.ddp_timeout,
                      help='minutes a process waits for the others under torchrun before failing')
    return parser


TILE_OVERLAP = 32  # pixels shared by neighbouring tiles, by default (test.py --tile_overlap; validation)


def tile_problem(tile: int | None, overlap: int, flag: str = '--tile') -> str | None:
    """What is wrong with restoring in `tile` x `tile` tiles that share `overlap` pixels, or None: the one rule of
    tiles (test.py --tile/--tile_overlap, trainer.py --val_tile, utils.inference.restore)."""
    if tile is None:
        return None
    if tile <= 0 or tile % 8:
        return f'{flag} {tile}: use a positive multiple of 8 (the networks work on multiples of 8), e.g. 512'
    if not 0 <= overlap <= tile // 2:
        return f'--tile_overlap {overlap}: use 0 up to half of {flag} ({tile // 2}), e.g. 32'
    return None


def add_device_flag(group: argparse._ArgumentGroup, official_alias: bool = False) -> None:
    """`--device`, the same in trainer.py and test.py (and `--gpus`, the official trainer's name for it)."""
    group.add_argument('--device', *(['--gpus'] if official_alias else []), dest='device', default='auto',
                       help='auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N, or GPU ids: 0, or 0,1 '
                            'with one torchrun process per id')


def add_amp_flags(group: argparse._ArgumentGroup, default: str = 'auto') -> None:
    """`--amp [auto|on|off]` and `--no-amp`, the same in trainer.py and test.py."""
    group.add_argument('--amp', nargs='?', const='on', choices=AMP_CHOICES, default=default,
                       help='bfloat16 autocast of the networks. auto: where the hardware computes bfloat16 natively '
                            '(a CUDA GPU of compute capability >= 8, a CPU with AVX-512-BF16 or AMX), float32 '
                            'elsewhere; --amp alone means on')
    group.add_argument('--no-amp', dest='amp', action='store_const', const='off', help='the same as --amp off')


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parses `argv` (default: the command line) into a validated `TrainConfig`, the map's sizes included."""
    config = parse_flags(argv)
    check_map_size(config)
    return config


def parse_flags(argv: list[str] | None = None) -> TrainConfig:
    """`parse_args` without the map-size check, and so without importing torch."""
    only_preset = argparse.ArgumentParser(add_help=False)  # read before --help, which shows the preset's defaults
    only_preset.add_argument('--preset', choices=tuple(PRESETS), default='paper')
    preset = only_preset.parse_known_args(argv)[0].preset
    parser = build_parser()
    parser.set_defaults(**PRESETS[preset])
    args = vars(parser.parse_args(argv))
    try:
        return _resolve(args)
    except ValueError as error:
        parser.error(str(error))


def _resolve(args: dict) -> TrainConfig:
    """Turns parsed flags into a `TrainConfig`, checking what argparse alone cannot."""
    args['de_type'] = tuple(parse_de_type(args['de_type']))
    args['replication'] = parse_replication(args['replication']) if args['replication'] else {}
    args['num_blocks'], args['heads'] = tuple(args['num_blocks']), tuple(args['heads'])
    args['val_tasks'] = tuple(args['val_tasks'])
    defaults = default_train_roots(args['data_root'])
    args['train_roots'] = {key: args.pop(flag) or str(defaults[key]) for key, flag in TRAIN_ROOT_FLAGS.items()}
    run = f'{args["type"]}_{args["backbone"]}'
    args['log_dir'] = args['log_dir'] or str(Path('runs') / run)
    args['ckpt_dir'] = args['ckpt_dir'] or str(Path('checkpoints') / run)
    config = TrainConfig(**args)

    if config.patch_size % 32:
        raise ValueError(f'--patch_size {config.patch_size}: the critic needs a multiple of 32 (e.g. 64, 128, 256)')
    if config.objective == 'l1' and config.pairnum == 0:
        raise ValueError("--objective l1 trains on paired iterations only, but --pairnum 0 makes every iteration "
                         'unpaired: give --pairnum > 0 or use --objective ot')
    problem = tile_problem(config.val_tile, TILE_OVERLAP, '--val_tile')
    if problem:
        raise ValueError(problem)
    list_paths(config.data_lists, config.de_type)  # a list it needs that is absent: an error now
    if config.val_split and config.val_dir:
        raise ValueError(f'--val_split {config.val_split} and --val_dir {config.val_dir}: validate on one of them')
    if config.resume not in ('none', 'auto') and not Path(config.resume).is_file():
        raise ValueError(f"--resume {config.resume}: no such file; give a checkpoint path, 'auto' or 'none'")
    return config


def check_map_size(config: TrainConfig) -> None:
    """Builds the map on the meta device and runs a forward there: any size flag the network rejects exits with
    a message that names the flags."""
    import torch

    from net import MODELS

    try:
        with torch.device('meta'):
            MODELS[config.backbone](**config.model_args)(torch.empty(1, 3, 8, 8))
    except ValueError as error:  # a size rule of the network's own, stated in the flags' words (PromptIR's dim)
        build_parser().error(f'--backbone {config.backbone}: {error}')
    except RuntimeError as error:
        build_parser().error(f'--dim {config.dim} --heads {" ".join(map(str, config.heads))} --num_blocks '
                             f'{" ".join(map(str, config.num_blocks))}: {config.backbone} cannot be built with these '
                             f'sizes; every level\'s channels (dim, 2dim, 4dim, 8dim) must divide by its heads '
                             f'({error})')
