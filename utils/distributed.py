"""Several processes under torchrun: device choice, gradient averaging, collective decisions, sharded sampling.

Data parallelism here does not use `DistributedDataParallel`: a DA-RCOT iteration calls the critic twice
before one backward and then differentiates through the critic's input gradient (the penalty), which DDP's
reducer does not support. Instead every update averages its gradients explicitly (`GradientSync`, one
all-reduce of a flat buffer per update). The weights start equal (`broadcast_state`) and every process
applies the same averaged gradient with the same optimizer, so they stay equal.

A single process (no `WORLD_SIZE` in the environment) runs the same code with `Runtime.world_size == 1`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class Runtime:
    """Where this process runs and which part of the work it does."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(spec: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The device of `--device` (trainer.py and test.py; `--gpus` in the official trainer):

    - `auto`: the GPU of this process (GPU `local_rank` under torchrun) where CUDA is available, else the CPU;
    - `cpu` (also `-1`, as the official code);
    - `cuda`, `cuda:N`: that GPU (`cuda` is GPU `local_rank` under torchrun); an error where CUDA is missing;
    - GPU ids, `0` or `0,1` (one per local rank under torchrun): the official form; where no GPU exists the
      run goes on on the CPU, with a warning, as the official trainer does.
    """
    spec = spec.strip().lower()
    if spec in ('cpu', '', '-1'):
        return torch.device('cpu')
    if spec == 'auto':
        return torch.device('cuda', local_rank) if torch.cuda.is_available() else torch.device('cpu')
    if spec.startswith('cuda'):
        if not torch.cuda.is_available():
            raise ValueError(f'--device {spec}, but CUDA is not available here; use --device cpu (or auto)')
        device = torch.device(spec)
        return torch.device('cuda', local_rank) if device.index is None else device
    try:
        ids = [int(part) for part in spec.split(',')]
    except ValueError:
        raise ValueError(f'--device {spec!r}: expected auto, cpu, cuda, cuda:N, or GPU ids such as 0 or 0,1') from None
    if not torch.cuda.is_available():
        warnings.warn('no GPU found: training runs on the CPU, where a full-size DA-RCOT iteration takes tens of '
                      'seconds (days per epoch); use --preset tiny or --preset demo to try the code there',
                      RuntimeWarning, stacklevel=2)
        return torch.device('cpu')
    if world_size == 1 and len(ids) > 1:
        raise ValueError(f'--device {spec}: one process trains on one GPU; for several, run '
                         f'torchrun --nproc_per_node {len(ids)} trainer.py --device {spec} ...')
    index = ids[local_rank] if len(ids) > 1 else (ids[0] if world_size == 1 else local_rank)
    if index >= torch.cuda.device_count():
        raise ValueError(f'--device {spec}: GPU {index} does not exist; this machine has {torch.cuda.device_count()}')
    return torch.device('cuda', index)


def setup(spec: str, timeout_minutes: float = 30.0) -> Runtime:
    """Joins the torchrun process group (NCCL on GPUs, gloo on the CPU) when there is one; `spec` is `--device`."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size == 1:
        return Runtime(pick_device(spec))
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    device = pick_device(spec, local_rank, world_size)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo', timeout=timedelta(minutes=timeout_minutes))
    return Runtime(device, rank, world_size, local_rank)


def teardown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


# What gloo and NCCL say when another process died (its sockets closed) or stopped answering (a timeout).
_LOST_PEER = re.compile(r'closed by peer|reset by peer|timed out|timeout|communicator was aborted', re.IGNORECASE)


@contextlib.contextmanager
def lost_peers_explained(runtime: Runtime, ckpt_dir: str) -> Iterator[None]:
    """Turns the backend's error about another process that died or hangs into a message saying what to do."""
    try:
        yield
    except RuntimeError as error:
        if not (runtime.distributed and _LOST_PEER.search(str(error))):
            raise
        raise SystemExit(f'process {runtime.rank}: another process died or stopped responding ({error}). The '
                         f'checkpoints in {ckpt_dir} are complete: find the cause in the other processes\' output, '
                         'then rerun the same torchrun command with --resume auto') from error


class GradientSync:
    """Makes every process take the same update decision and apply the same, averaged gradient."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def all_true(self, flag: bool) -> bool:
        """True only if `flag` is true on every process (e.g. 'my loss is finite')."""
        if not self.runtime.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.runtime.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def any_true(self, flag: bool) -> bool:
        """True if `flag` is true on some process (e.g. 'my time is up')."""
        return not self.all_true(not flag)

    def average(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replaces each gradient by its mean over the processes; a missing gradient counts as zeros."""
        if not self.runtime.distributed:
            return
        parameters = [p for p in parameters if p.requires_grad]
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in parameters])
        dist.all_reduce(flat)
        flat /= self.runtime.world_size
        offset = 0
        for p in parameters:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def broadcast_state(module: nn.Module, runtime: Runtime) -> None:
    """Copies rank 0's parameters and buffers to every process."""
    if runtime.distributed:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def gather(obj: object, runtime: Runtime) -> list:
    """Every process's `obj`, in rank order, on every process."""
    if not runtime.distributed:
        return [obj]
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_checked(networks: dict[str, torch.nn.Module], rng: dict, runtime: Runtime, step: int,
                   ckpt_dir: str) -> list[dict]:
    """Every process's `rng` (`utils.rng.capture_rng`), gathered for a checkpoint, after checking that the weights
    about to be saved are finite and the same in every process (a checksum of each network).

    Raises:
        SystemExit: for non-finite weights (nothing is saved over the checkpoints in `ckpt_dir`).
        RuntimeError: when the processes hold different weights (a bug of the gradient averaging).
    """
    checksum = tuple(sum(p.detach().double().sum().item() for p in net.parameters()) for net in networks.values())
    gathered = gather((rng, checksum), runtime)
    checksums = [checksum for _, checksum in gathered]
    if not all(math.isfinite(value) for checksum in checksums for value in checksum):
        raise SystemExit(f'non-finite weights after {step} iterations; nothing was saved over the checkpoints in '
                         f'{ckpt_dir}. Lower --lr, or resume from them')
    if len(set(checksums)) > 1:
        raise RuntimeError(f'the processes hold different weights after {step} iterations; this is a bug in the '
                           'gradient averaging (utils.distributed.GradientSync). Nothing was saved')
    return [state for state, _ in gathered]


class ShardSampler(DistributedSampler):
    """`DistributedSampler` (a seeded permutation per epoch, one shard per process) that can start mid-epoch.

    `set_epoch(epoch, start)` skips the first `start` indices of this process's shard, so a run resumed after
    k batches sees exactly the batches an uninterrupted run would have seen next.
    """

    def __init__(self, dataset: Dataset, runtime: Runtime, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)
