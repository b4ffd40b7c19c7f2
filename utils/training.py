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
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from data.tasks import NOISE_SIGMAS, train_task
from data.test_sets import TestSet, find_test_sets
from data.train_set import CleanPatchSource, TrainDataset, WithCleanPatches
from net import MODELS, Critic, set_activation_checkpointing
from net.critic import OFFICIAL_WIDTH
from options import TrainConfig
from utils import distributed, precision
from utils.acceleration import for_training
from utils.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    export_maps,
    load_checkpoint,
    load_network_state,
    model_spec,
    save_checkpoint,
)
from utils.evaluate import evaluate
from utils.iteration import l1_iteration, ot_iteration
from utils.monitor import Monitor
from utils.objective import ObjectiveWeights
from utils.train_state import (
    LAST,
    capture_rng,
    epoch_file,
    iteration_generator,
    prune_epoch_files,
    restore_rng,
    resume_path,
)

OPTIMIZERS = {'RMSprop': torch.optim.RMSprop, 'Adam': torch.optim.Adam}
# --identity_init scales the map's output convolution by this: T(x) starts next to x. Not to 0: at T(x) = x
# exactly, the transport cost's square root has no gradient (0/0) and every map step would be skipped.
IDENTITY_INIT_SCALE = 1e-2


def train(config: TrainConfig, runtime: distributed.Runtime, command: list[str]) -> None:
    """Trains as `config` says; `command` is the command line recorded with the run."""
    started, device, ot = time.monotonic(), runtime.device, config.objective == 'ot'
    torch.manual_seed(config.seed)
    networks = {'map': MODELS[config.backbone](**config.model_args).to(device)}
    set_activation_checkpointing(networks['map'], config.checkpointing)
    if config.identity_init:  # every map ends in a convolution `output` whose result is added to its input
        with torch.no_grad():
            for parameter in networks['map'].output.parameters():
                parameter.mul_(IDENTITY_INIT_SCALE)
    if ot:
        networks['critic'] = Critic(config.patch_size, config.critic_width).to(device)
    lrs = {'map': config.map_lr or config.lr / 2, 'critic': config.lr}
    optimizers = {name: OPTIMIZERS[config.optimizer](net.parameters(), lr=lrs[name]) for name, net in networks.items()}
    schedulers = {name: make_scheduler(opt, config) for name, opt in optimizers.items()}
    # --ema: an exponential moving average of the map's weights, updated after every applied map step.
    ema = AveragedModel(networks['map'], multi_avg_fn=get_ema_multi_avg_fn(config.ema)) if config.ema else None
    start_epoch, first_iteration, step, best_psnr = 1, 0, 0, -math.inf
    resume = resume_path(config.resume, config.ckpt_dir)
    if resume is not None:
        start_epoch, first_iteration, step, best_psnr = restore(resume, networks, optimizers, schedulers, config,
                                                                runtime, ema)
    for network in networks.values():
        distributed.broadcast_state(network, runtime)
    chosen = precision.choose(config.amp, device)
    stepping = {name: for_training(net, device, amp=chosen.amp, compile=config.compile and name == 'map')
                for name, net in networks.items()}

    dataset, sampler, loader, per_epoch, paired_iterations = training_data(config, runtime)
    total = min(config.nEpochs * per_epoch, config.max_iters or math.inf)
    test_sets = validation_sets(config, dataset.held_out)

    monitor = Monitor(config.log_dir, enabled=runtime.is_main, start_step=step, total_steps=total,
                      log_every=config.log_every, image_every=config.image_every)
    monitor.record_run({**config.to_dict(), 'precision': chosen.to_dict()}, command)
    monitor.message(f'precision: {chosen.describe()}')
    if resume is not None:
        monitor.message(f'resumed from {resume}: epoch {start_epoch}, iteration {first_iteration}, {step} done')
    weights = ObjectiveWeights(sigma=config.sigma, Sigma=config.Sigma, fourier=not config.no_fourier)
    sync = distributed.GradientSync(runtime)

    def save(names: list[str], epoch: int, iteration: int) -> None:
        """Writes the training state (all processes call it: it gathers every process's random state)."""
        held = {**networks, **({'map_ema': ema.module} if ema else {})}
        gathered = distributed.gather((capture_rng(), _fingerprint(held)), runtime)
        fingerprints = [fingerprint for _, fingerprint in gathered]
        if not all(math.isfinite(value) for fingerprint in fingerprints for value in fingerprint):
            raise SystemExit(f'non-finite weights after {step} iterations; nothing was saved over the checkpoints '
                             f'in {config.ckpt_dir}. Lower --lr, or resume from them')
        if len(set(fingerprints)) > 1:
            raise RuntimeError(f'the processes hold different weights after {step} iterations; this is a bug in '
                               'the gradient averaging (utils.distributed.GradientSync). Nothing was saved')
        if not runtime.is_main:
            return
        rng = [state for state, _ in gathered]
        state = {'format': FORMAT, 'version': VERSION, 'model': model_spec(config.backbone, _plain(config.model_args)),
                 **{name: net.state_dict() for name, net in networks.items()},
                 **{f'{name}_optimizer': opt.state_dict() for name, opt in optimizers.items()},
                 **{f'{name}_scheduler': s.state_dict() for name, s in schedulers.items()},
                 'epoch': epoch, 'iteration': iteration, 'step': step, 'best_psnr': best_psnr, 'rng': rng,
                 'world_size': runtime.world_size, 'config': config.to_dict(),
                 'training': {'steps': step, 'planned_steps': total, 'stopped_by': stop, 'precision': chosen.to_dict(),
                              'val_dir': str(Path(config.val_dir).resolve()) if config.val_dir else None,
                              'val_split': config.val_split,
                              'chosen_by_validation': 'best.pth' in names}}
        if ot:
            state['critic_patch_size'], state['critic_width'] = config.patch_size, config.critic_width
        if ema is not None:
            state.update(map_ema=ema.module.state_dict(), map_ema_updates=int(ema.n_averaged), ema_decay=config.ema)
        for name in names:
            save_checkpoint(state, Path(config.ckpt_dir) / name)
        for name, stem in ((LAST, 'last'), ('best.pth', 'best')):  # test.py's files, as new as the checkpoints
            if name in names:
                export_maps(state, config.ckpt_dir, stem)

    def validate(epoch: int, iteration: int) -> None:
        """Scores the map on the test sets (rank 0) and keeps it as best.pth if its mean PSNR is the best yet;
        (epoch, iteration) is where a run resumed from best.pth goes on."""
        nonlocal best_psnr
        if not test_sets:
            return
        mean_psnr = None
        if runtime.is_main:
            scored = {'': ema.module, 'raw': networks['map']} if ema else {'': networks['map']}
            means = {}  # '': the weights kept as best and exported (the EMA where there is one); 'raw'
            for weights, network in scored.items():
                records = evaluate(network, test_sets, device=device, tile=config.val_tile, amp=chosen.amp,
                                   progress=False)
                means[weights] = sum(r['psnr'] for r in records) / len(records)
                monitor.validation(step, records, means[weights], weights)
            mean_psnr = means['']
        mean_psnr = distributed.gather(mean_psnr, runtime)[0]
        if mean_psnr > best_psnr:
            best_psnr = mean_psnr
            save(['best.pth'], epoch, iteration)

    bad, stop = 0, stop_reason(config, step, started, sync)
    for epoch in range(start_epoch, config.nEpochs + 1):
        if stop:
            break
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, first_iteration * config.batchSize)
        iteration, fetched = first_iteration, time.perf_counter()
        for batch in loader:
            if iteration >= per_epoch:
                break
            begun = time.perf_counter()
            paired = iteration < paired_iterations
            degraded, target = batch['lq'].to(device), batch['gt'].to(device)
            if ot:
                clean = batch['clean'].to(device) if not paired and 'clean' in batch else target
                alpha = torch.rand(len(degraded), 1, 1, 1, generator=iteration_generator(config.seed, runtime.rank,
                                                                                         step)).to(device)
                terms = ot_iteration(stepping['map'], stepping['critic'], optimizers['map'], optimizers['critic'],
                                     degraded, batch['task'].to(device), clean, target if paired else None, weights,
                                     alpha=alpha, sync=sync)
            else:
                terms = l1_iteration(stepping['map'], optimizers['map'], degraded, target, sync=sync)
            step, iteration = step + 1, iteration + 1
            if ema is not None and not terms['map_skipped']:
                ema.update_parameters(networks['map'])
            bad = bad + 1 if terms['skipped'] else 0
            monitor.iteration(step, epoch, iteration, paired, terms,
                              {name: opt.param_groups[0]['lr'] for name, opt in optimizers.items()},
                              data_time=begun - fetched, step_time=time.perf_counter() - begun)
            if monitor.wants_images(step):
                with torch.no_grad():
                    monitor.images(step, degraded, networks['map'](degraded)[0], target)
            if bad >= config.max_bad_iters:
                monitor.close()
                raise SystemExit(f'stopped: {bad} consecutive iterations had a non-finite loss or gradient '
                                 f'(--max_bad_iters {config.max_bad_iters}); the last good checkpoint is '
                                 f'{Path(config.ckpt_dir) / LAST}. Lower --lr, check the data, or resume from it')
            stop = stop_reason(config, step, started, sync)
            if (stop or step % config.save_every == 0) and iteration < per_epoch:  # the epoch's end saves below
                save([LAST], epoch, iteration)
            if config.val_every and step % config.val_every == 0:
                validate(epoch, iteration)
            if stop:
                break
            fetched = time.perf_counter()
        if stop and iteration < per_epoch:
            break
        for scheduler in schedulers.values():
            scheduler.step()
        if config.skip_unreadable:
            monitor.message(f'epoch {epoch}: {dataset.skipped_unreadable} unreadable training samples replaced so '
                            'far in this process (--skip_unreadable)')
        first_iteration = 0
        save([LAST] if config.keep_epochs == 0 else [LAST, epoch_file(epoch)], epoch + 1, 0)
        if config.keep_epochs and runtime.is_main:
            prune_epoch_files(config.ckpt_dir, config.keep_epochs)
        if not config.val_every:
            validate(epoch + 1, 0)
        if stop:
            break

    if runtime.is_main:
        monitor.message(f'{stop or "all epochs done"} after {step} iterations. Checkpoints: {config.ckpt_dir} '
                        f'(last_map.pth for test.py); logs: tensorboard --logdir {config.log_dir}')
    monitor.close()


def training_data(config: TrainConfig, runtime: distributed.Runtime
                  ) -> tuple[Dataset, distributed.ShardSampler, DataLoader, int, int]:
    """The training set, its sampler and loader, the iterations per epoch and how many of them are paired."""
    data_args = dict(roots=config.train_roots, de_types=config.de_type, patch_size=config.patch_size,
                     replication=config.replication or None, seed=config.seed, cache=config.cache,
                     skip_unreadable=config.skip_unreadable, val_split=config.val_split)
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
    return dataset, sampler, loader, per_epoch, paired_iterations


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


def restore(path: Path, networks: dict, optimizers: dict, schedulers: dict, config: TrainConfig,
            runtime: distributed.Runtime, ema: AveragedModel | None = None) -> tuple[int, int, int, float]:
    """Loads a training checkpoint into the networks, optimizers, schedulers and the EMA; returns where it
    stopped."""
    state = load_checkpoint(path, map_location=runtime.device)
    # Checked first, so that an export is not reported as a missing critic (trainer.py writes the critic's
    # state together with critic_patch_size, checked below).
    if any(key not in state for key in ('map_optimizer', 'map_scheduler', 'epoch', 'iteration', 'step', 'rng')):
        raise CheckpointError(f'{path} is not a training checkpoint of trainer.py (a weights-only export?); '
                              'resume from last.pth, best.pth or epoch_NNNN.pth')
    expected = model_spec(config.backbone, _plain(config.model_args))
    if _plain(state['model']) != expected:
        raise CheckpointError(f'{path} holds {state["model"]}, but the flags ask for {expected}: give the same '
                              '--backbone/--dim/--num_blocks/--heads (or --preset), or another --ckpt_dir')
    if 'critic' in networks and state.get('critic_patch_size') != config.patch_size:
        raise CheckpointError(f'{path} has a critic for --patch_size {state.get("critic_patch_size")} (or none: '
                              f'--objective l1), not {config.patch_size}; resume with the flags it was trained with')
    if 'critic' in networks and state.get('critic_width', OFFICIAL_WIDTH) != config.critic_width:
        raise CheckpointError(f'{path} has a critic of --critic_width {state.get("critic_width", OFFICIAL_WIDTH)}, '
                              f'not {config.critic_width}; resume with the flags it was trained with')
    if state.get('ema_decay') != config.ema:
        kept = f'an EMA of decay {state["ema_decay"]:g}' if state.get('ema_decay') else 'no EMA'
        asked = f'--ema {config.ema:g}' if config.ema else 'none'
        raise CheckpointError(f'{path} keeps {kept}, but the flags ask for {asked}; resume with the --ema it was '
                              'trained with')
    if ema is not None:
        load_network_state(ema.module, state['map_ema'], source=f'{path} (map_ema)')
        ema.n_averaged.fill_(state['map_ema_updates'])
    for name, network in networks.items():
        load_network_state(network, state[name], source=f'{path} ({name})')
        optimizers[name].load_state_dict(state[f'{name}_optimizer'])
        schedulers[name].load_state_dict(state[f'{name}_scheduler'])
    if len(state['rng']) == runtime.world_size:
        restore_rng(state['rng'][runtime.rank])
    else:
        warnings.warn(f'{path} was written by {len(state["rng"])} processes, this run has {runtime.world_size}: the '
                      'global random states are not restored (iteration seeds and data order still are)',
                      RuntimeWarning, stacklevel=2)
    return state['epoch'], state['iteration'], state['step'], state.get('best_psnr', -math.inf)


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


def _fingerprint(networks: dict) -> tuple[float, ...]:
    """A checksum of each network's weights, to check that every process holds the same ones."""
    return tuple(sum(p.detach().double().sum().item() for p in net.parameters()) for net in networks.values())


def _plain(value: object) -> object:
    """Tuples -> lists, recursively: the form a checkpoint stores."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value] if isinstance(value, (list, tuple)) else value
