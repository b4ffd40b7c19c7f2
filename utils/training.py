"""The training loop of `trainer.py`: a `TrainConfig` -> data, networks, objective, iterations, logs, checkpoints.

One iteration (`utils.iteration.ot_iteration`): a critic step, a second critic step on the gradient
penalty, then a map step. Within an epoch an iteration is paired while `iteration < pairnum // (batchSize x
processes)` (the map loss has the contrastive and L1 terms), unpaired after; in unpaired iterations the
critic sees clean patches independent of the batch (`--critic_on_targets`: the batch's own targets, as the
official code). `--objective l1` trains on the paired L1 term alone. Critic lr = `--lr`, map lr = `--lr`/2
(or `--map_lr`), both x0.1 every `--step` epochs (or annealed to 0 with `--lr_schedule cosine`); RMSprop or Adam.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from data.tasks import NOISE_SIGMAS, train_task
from data.test_sets import TestSet, find_test_sets
from data.train_lists import list_paths
from data.train_set import CleanPatchSource, TrainDataset, WithCleanPatches
from net import MODELS, Critic, set_activation_checkpointing, start_near_identity
from options import TrainConfig
from utils import distributed, precision
from utils.acceleration import for_training
from utils.checkpoint import (
    BEST,
    LAST,
    epoch_file,
    model_spec,
    prune_epoch_files,
    restore_training,
    resume_path,
    save_training,
    training_state,
)
from utils.evaluate import evaluate
from utils.iteration import l1_iteration, ot_iteration
from utils.monitor import Monitor
from utils.objective import ObjectiveWeights
from utils.rng import capture_rng, iteration_generator, restore_rng

OPTIMIZERS = {'RMSprop': torch.optim.RMSprop, 'Adam': torch.optim.Adam}


@dataclass
class TrainingData:
    """The training set, its sampler and loader, the batches per epoch (per process) and how many are paired."""

    dataset: Dataset
    sampler: distributed.ShardSampler
    loader: DataLoader
    per_epoch: int
    paired_iterations: int


@dataclass
class Run:
    """What the loop's parts share: the settings, the networks (`map`, `critic`), their optimizers and schedulers,
    the averaged map, where the run is (`epoch` and `iteration` next, `step` iterations done), the best
    validation PSNR, why it stops (None while it goes on) and its monitor."""

    config: TrainConfig
    runtime: distributed.Runtime
    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    ema: AveragedModel | None
    precision: precision.Precision | None = None
    monitor: Monitor | None = None
    test_sets: list = field(default_factory=list)
    planned_steps: int = 0
    epoch: int = 1
    iteration: int = 0
    step: int = 0
    best_psnr: float = -math.inf
    stopped_by: str | None = None
    resumed_from: Path | None = None
    bad_iterations: int = 0  # consecutive iterations with a non-finite loss or gradient

    def model(self) -> dict:
        """The networks' spec, as checkpoints store it."""
        critic = ({'patch_size': self.config.patch_size, 'width': self.config.critic_width}
                  if 'critic' in self.networks else None)
        return model_spec(self.config.backbone, self.config.model_args, critic)

    def save(self, names: list[str]) -> None:
        """Writes the training state as `names` (all processes call it: it gathers every process's random state)."""
        held = {**self.networks, **({'map_ema': self.ema.module} if self.ema else {})}
        rng = distributed.gather_checked(held, capture_rng(), self.runtime, self.step, self.config.ckpt_dir)
        if not self.runtime.is_main:
            return
        config = self.config
        training = {'steps': self.step, 'planned_steps': self.planned_steps, 'stopped_by': self.stopped_by,
                    'precision': self.precision.to_dict(),
                    'val_dir': str(Path(config.val_dir).resolve()) if config.val_dir else None,
                    'val_split': config.val_split, 'chosen_by_validation': BEST in names}
        state = training_state(
            model=self.model(), networks=self.networks, optimizers=self.optimizers, schedulers=self.schedulers,
            ema=self.ema.module if self.ema else None, ema_updates=int(self.ema.n_averaged) if self.ema else 0,
            ema_decay=config.ema, position={'epoch': self.epoch, 'iteration': self.iteration, 'step': self.step,
                                            'best_psnr': self.best_psnr},
            rng=rng, world_size=self.runtime.world_size, config=config.to_dict(), training=training)
        save_training(state, config.ckpt_dir, names)

    def validate(self) -> None:
        """Scores the map on the validation sets (rank 0) and keeps it as best.pth if its mean PSNR is the best yet
        (the averaged map where the run keeps one; the raw one is scored too)."""
        if not self.test_sets:
            return
        mean_psnr = None
        if self.runtime.is_main:
            scored = {'': self.ema.module, 'raw': self.networks['map']} if self.ema else {'': self.networks['map']}
            means = {}
            for weights, network in scored.items():
                records = evaluate(network, self.test_sets, device=self.runtime.device, tile=self.config.val_tile,
                                   amp=self.precision.amp, progress=False)
                means[weights] = sum(r['psnr'] for r in records) / len(records)
                self.monitor.validation(self.step, records, means[weights], weights)
            mean_psnr = means['']
        mean_psnr = distributed.gather(mean_psnr, self.runtime)[0]
        if mean_psnr > self.best_psnr:
            self.best_psnr = mean_psnr
            self.save([BEST])


def train(config: TrainConfig, runtime: distributed.Runtime, command: list[str]) -> None:
    """Trains as `config` says; `command` is the command line recorded with the run."""
    started = time.monotonic()
    run = start(config, runtime)
    run.precision = precision.choose(config.amp, runtime.device)
    stepping = {name: for_training(net, runtime.device, amp=run.precision.amp, compile=config.compile and name == 'map')
                for name, net in run.networks.items()}
    data = training_data(config, runtime)
    run.planned_steps = min(config.nEpochs * data.per_epoch, config.max_iters or math.inf)
    run.test_sets = validation_sets(config, data.dataset.held_out)
    run.monitor = Monitor(config.log_dir, enabled=runtime.is_main, start_step=run.step, total_steps=run.planned_steps,
                          log_every=config.log_every, image_every=config.image_every)
    run.monitor.record_run({**config.to_dict(), 'precision': run.precision.to_dict()}, command)
    run.monitor.message(f'precision: {run.precision.describe()}')
    for match in data.dataset.list_matches.values():
        run.monitor.message(f'training list of {match.report()}')
    if run.resumed_from is not None:
        run.monitor.message(f'resumed from {run.resumed_from}: epoch {run.epoch}, iteration {run.iteration}, '
                            f'{run.step} done')
    weights = ObjectiveWeights(sigma=config.sigma, Sigma=config.Sigma, fourier=not config.no_fourier)
    sync = distributed.GradientSync(runtime)
    run.stopped_by = stop_reason(config, run.step, started, sync)
    while run.stopped_by is None and run.epoch <= config.nEpochs:
        run_epoch(run, data, stepping, weights, sync, started)
    if runtime.is_main:
        run.monitor.message(f'{run.stopped_by or "all epochs done"} after {run.step} iterations. Checkpoints: '
                            f'{config.ckpt_dir} (last_map.pth for test.py); logs: tensorboard --logdir '
                            f'{config.log_dir}')
    run.monitor.close()


def start(config: TrainConfig, runtime: distributed.Runtime) -> Run:
    """The networks, optimizers, schedulers and averaged map of a new run (seeded by `--seed`), or of the run
    `--resume` names, restored where it stopped; the same weights in every process."""
    torch.manual_seed(config.seed)
    device = runtime.device
    networks = {'map': MODELS[config.backbone](**config.model_args).to(device)}
    set_activation_checkpointing(networks['map'], config.checkpointing)
    if config.identity_init:
        start_near_identity(networks['map'])
    if config.objective == 'ot':
        networks['critic'] = Critic(config.patch_size, config.critic_width).to(device)
    lrs = {'map': config.map_lr or config.lr / 2, 'critic': config.lr}
    optimizers = {name: OPTIMIZERS[config.optimizer](net.parameters(), lr=lrs[name]) for name, net in networks.items()}
    schedulers = {name: make_scheduler(opt, config) for name, opt in optimizers.items()}
    # --ema: an exponential moving average of the map's weights, updated after every applied map step.
    ema = AveragedModel(networks['map'], multi_avg_fn=get_ema_multi_avg_fn(config.ema)) if config.ema else None
    run = Run(config, runtime, networks, optimizers, schedulers, ema)
    path = resume_path(config.resume, config.ckpt_dir)
    if path is not None:
        state = restore_training(path, run.model(), networks, optimizers, schedulers, ema.module if ema else None,
                                 config.ema, device)
        if ema is not None:
            ema.n_averaged.fill_(state['map_ema_updates'])
        run.epoch, run.iteration, run.step = state['epoch'], state['iteration'], state['step']
        written_by = len(state['rng'])
        if written_by == runtime.world_size:
            restore_rng(state['rng'][runtime.rank])
        else:
            # An epoch's shards interleave one permutation, so k iterations of W processes used its first k x batch x
            # W samples: continue at the iteration of the new sharding that starts at or just before that sample.
            run.iteration = run.iteration * written_by // runtime.world_size
            warnings.warn(f'{path} was written by {written_by} processes, this run has {runtime.world_size}: epoch '
                          f'{run.epoch} continues at iteration {run.iteration} of the new sharding (no sample of the '
                          f'epoch skipped, fewer than batch x {runtime.world_size} seen twice); the random states of '
                          'the processes are not restored', RuntimeWarning, stacklevel=2)
        run.best_psnr, run.resumed_from = state.get('best_psnr', -math.inf), path
    for network in networks.values():
        distributed.broadcast_state(network, runtime)
    return run


def run_epoch(run: Run, data: TrainingData, stepping: dict, weights: ObjectiveWeights,
              sync: distributed.GradientSync, started: float) -> None:
    """The iterations of epoch `run.epoch` from `run.iteration` on, until it ends or the run stops (the one place
    `run.stopped_by` is set), then, where the epoch ended, its end: schedulers, checkpoints, validation."""
    config, device = run.config, run.runtime.device
    data.dataset.set_epoch(run.epoch)
    data.sampler.set_epoch(run.epoch, run.iteration * config.batchSize)
    fetched = time.perf_counter()
    for batch in data.loader:
        if run.iteration >= data.per_epoch:
            break
        begun, paired = time.perf_counter(), run.iteration < data.paired_iterations
        degraded, target = batch['lq'].to(device), batch['gt'].to(device)
        if 'critic' in stepping:
            clean = batch['clean'].to(device) if not paired and 'clean' in batch else target
            alpha = torch.rand(len(degraded), 1, 1, 1, generator=iteration_generator(
                config.seed, run.runtime.rank, run.step)).to(device)
            terms = ot_iteration(stepping['map'], stepping['critic'], run.optimizers['map'], run.optimizers['critic'],
                                 degraded, batch['task'].to(device), clean, target if paired else None, weights,
                                 alpha=alpha, sync=sync)
        else:
            terms = l1_iteration(stepping['map'], run.optimizers['map'], degraded, target, sync=sync)
        run.step, run.iteration = run.step + 1, run.iteration + 1
        if run.ema is not None and not terms['map_skipped']:
            run.ema.update_parameters(run.networks['map'])
        run.bad_iterations = run.bad_iterations + 1 if terms['skipped'] else 0
        run.monitor.iteration(run.step, run.epoch, run.iteration, paired, terms,
                              {name: opt.param_groups[0]['lr'] for name, opt in run.optimizers.items()},
                              data_time=begun - fetched, step_time=time.perf_counter() - begun)
        if run.monitor.wants_images(run.step):
            with torch.no_grad():
                run.monitor.images(run.step, degraded, run.networks['map'](degraded)[0], target)
        if run.bad_iterations >= config.max_bad_iters:
            run.monitor.close()
            raise SystemExit(f'stopped: {run.bad_iterations} consecutive iterations had a non-finite loss or gradient '
                             f'(--max_bad_iters {config.max_bad_iters}); the last good checkpoint is '
                             f'{Path(config.ckpt_dir) / LAST}. Lower --lr, check the data, or resume from it')
        run.stopped_by = stop_reason(config, run.step, started, sync)
        if (run.stopped_by or run.step % config.save_every == 0) and run.iteration < data.per_epoch:
            run.save([LAST])  # (the epoch's end saves below)
        if config.val_every and run.step % config.val_every == 0:
            run.validate()
        if run.stopped_by:
            break
        fetched = time.perf_counter()
    if run.iteration >= data.per_epoch:
        end_epoch(run, data)


def end_epoch(run: Run, data: TrainingData) -> None:
    """After the last iteration of an epoch: the schedulers step, last.pth and epoch_NNNN.pth are written (the
    older epoch files pruned), and without --val_every the map is validated."""
    config = run.config
    for scheduler in run.schedulers.values():
        scheduler.step()
    if config.skip_unreadable:
        run.monitor.message(f'epoch {run.epoch}: {data.dataset.skipped_unreadable} unreadable training samples '
                            'replaced so far in this process (--skip_unreadable)')
    run.epoch, run.iteration = run.epoch + 1, 0
    run.save([LAST] if config.keep_epochs == 0 else [LAST, epoch_file(run.epoch - 1)])
    if config.keep_epochs and run.runtime.is_main:
        prune_epoch_files(config.ckpt_dir, config.keep_epochs)
    if not config.val_every:
        run.validate()


def training_data(config: TrainConfig, runtime: distributed.Runtime) -> TrainingData:
    """The training set, its sampler and loader, the iterations per epoch and how many of them are paired."""
    data_args = dict(roots=config.train_roots, de_types=config.de_type, patch_size=config.patch_size,
                     replication=config.replication or None, seed=config.seed, cache=config.cache,
                     skip_unreadable=config.skip_unreadable, val_split=config.val_split,
                     lists=list_paths(config.data_lists, config.de_type))
    dataset = TrainDataset(**data_args)
    per_epoch = math.ceil(math.ceil(len(dataset) / runtime.world_size) / config.batchSize)  # batches per process
    paired_iterations = config.pairnum // (config.batchSize * runtime.world_size)
    if config.objective == 'l1':  # the L1 ablation trains on the paired part of each epoch only
        per_epoch = min(per_epoch, paired_iterations)
    elif not config.critic_on_targets and paired_iterations < per_epoch:
        dataset = WithCleanPatches(dataset, CleanPatchSource(**data_args))
    sampler = distributed.ShardSampler(dataset, runtime, seed=config.seed)
    loader = DataLoader(dataset, config.batchSize, sampler=sampler, num_workers=config.threads,
                        pin_memory=runtime.device.type == 'cuda', persistent_workers=config.threads > 0)
    return TrainingData(dataset, sampler, loader, per_epoch, paired_iterations)


def stop_reason(config: TrainConfig, step: int, started: float, sync: distributed.GradientSync) -> str | None:
    """Why the run stops after `step` iterations, agreed by every process; None to go on."""
    if config.max_iters and step >= config.max_iters:
        return f'--max_iters {config.max_iters} reached'
    minutes = (time.monotonic() - started) / 60
    if sync.any_true(config.max_minutes is not None and minutes >= config.max_minutes):
        return f'--max_minutes {config.max_minutes:g} reached'
    return None


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once per epoch."""
    if config.lr_schedule == 'cosine':
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.nEpochs)
    return torch.optim.lr_scheduler.StepLR(optimizer, config.step, gamma=0.1)


def validation_sets(config: TrainConfig, held_out: dict[str, tuple]) -> list:
    """The full-size sets to validate on: the training pairs `held_out` by `--val_split`, or the test sets of
    `--val_dir`; for `--val_tasks`, or the tasks of `--de_type`."""
    tasks = config.val_tasks or tuple(dict.fromkeys(train_task(token) for token in config.de_type))
    sigmas = tuple(NOISE_SIGMAS[token] for token in config.de_type if token in NOISE_SIGMAS) or (15, 25, 50)
    if config.val_split:
        unknown = sorted(set(tasks) - set(held_out))
        if unknown:
            raise SystemExit(f'--val_tasks {" ".join(unknown)}: not trained here, so --val_split holds none of their '
                             'images out; validate on the trained tasks')
        return [TestSet(task, 'held-out', held_out[task], sigma) for task in tasks
                for sigma in (sigmas if task == 'denoise' else (None,))]
    if config.val_dir is None:
        return []
    test_sets, missing = find_test_sets(config.val_dir, tasks, sigmas)
    if missing:
        raise SystemExit('--val_dir ' + config.val_dir + ': ' + '; '.join(missing)
                         + '. Give --val_tasks with the tasks that exist there')
    return test_sets
