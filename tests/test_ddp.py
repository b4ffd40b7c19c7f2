"""Several processes (gloo on the CPU): sharded resumable sampling, gradient averaging that keeps every process's
weights identical, and a 2-process torchrun training run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from net import Critic, MRCNet
from utils import distributed
from utils.checkpoint import load_checkpoint
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights

ROOT = Path(__file__).resolve().parents[1]


def _runtime(rank: int, world_size: int) -> distributed.Runtime:
    return distributed.Runtime(torch.device('cpu'), rank, world_size, rank)


def test_shards_cover_the_epoch_and_resume_mid_shard():
    dataset = list(range(11))
    shards = [list(distributed.ShardSampler(dataset, _runtime(rank, 2), seed=3)) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6  # padded to equal length: ranks run the same number of batches
    assert set(shards[0] + shards[1]) == set(dataset)
    sampler = distributed.ShardSampler(dataset, _runtime(1, 2), seed=3)
    sampler.set_epoch(4)
    whole = list(sampler)
    sampler.set_epoch(4, start=4)
    assert list(sampler) == whole[4:] and len(sampler) == 2
    sampler.set_epoch(5)
    assert list(sampler) != whole  # a new permutation each epoch


def test_device_choice_falls_back_to_the_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.warns(RuntimeWarning, match='no GPU found'):
        assert distributed.pick_device('0') == torch.device('cpu')
    assert distributed.pick_device('cpu') == distributed.pick_device('auto') == torch.device('cpu')
    with pytest.raises(ValueError, match='--device'):
        distributed.pick_device('first')
    with pytest.raises(ValueError, match='CUDA is not available here; use --device cpu'):
        distributed.pick_device('cuda:1')  # a device named explicitly is not replaced by another


def test_one_process_takes_one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    assert distributed.pick_device('2') == torch.device('cuda', 2)
    assert distributed.pick_device('2,3', local_rank=1, world_size=2) == torch.device('cuda', 3)
    assert distributed.pick_device('0', local_rank=1, world_size=2) == torch.device('cuda', 1)
    with pytest.raises(ValueError, match='torchrun --nproc_per_node 2'):
        distributed.pick_device('0,1')
    with pytest.raises(ValueError, match='GPU 7 does not exist'):
        distributed.pick_device('7')
    assert distributed.pick_device('auto', local_rank=3, world_size=4) == torch.device('cuda', 3)
    assert distributed.pick_device('cuda', local_rank=2, world_size=4) == torch.device('cuda', 2)
    assert distributed.pick_device('cuda:1') == torch.device('cuda', 1)


def _train_two_ranks(rank: int, init_file: str) -> None:
    """One of two processes: different initial weights and data, a NaN on rank 1 in the second iteration."""
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    runtime = _runtime(rank, 2)
    torch.manual_seed(rank)  # different initial weights on each process: broadcast_state must align them
    transport_map, critic = MRCNet(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1), Critic(32)
    for network in (transport_map, critic):
        distributed.broadcast_state(network, runtime)
    initial = torch.cat([p.detach().flatten().clone() for p in transport_map.parameters()])
    map_optimizer = torch.optim.RMSprop(transport_map.parameters(), lr=5e-5)
    critic_optimizer = torch.optim.RMSprop(critic.parameters(), lr=1e-4)
    sync = distributed.GradientSync(runtime)
    skipped = []
    for iteration in range(3):
        x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)  # this process's own batch
        if iteration == 1 and rank == 1:
            x[0, 0, 0, 0] = float('nan')
        terms = ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, x, torch.tensor([0, 3]), y,
                             y, ObjectiveWeights(), sync=sync)
        skipped.append(terms['skipped'])
    assert skipped == [0, 3, 0]  # both processes skip the update that is bad on one of them
    for network in (transport_map, critic):
        mine = torch.cat([p.detach().flatten() for p in network.parameters()])
        theirs = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(theirs, mine)
        assert torch.equal(theirs[0], theirs[1])
    assert not torch.equal(initial, torch.cat([p.detach().flatten() for p in transport_map.parameters()]))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::RuntimeWarning')
def test_gradient_averaging_keeps_the_processes_identical(tmp_path):
    mp.spawn(_train_two_ranks, args=(str(tmp_path / 'rendezvous'),), nprocs=2)


@pytest.mark.slow
def test_torchrun_trains_validates_and_resumes_on_another_world_size(tmp_path):
    import trainer
    from tests.fixtures import records, tiny_argv, write_tiny_data  # here: spawned processes need not import them

    data = write_tiny_data(tmp_path / 'data')
    # Per process: 3 of the 5 samples (padded), 2 iterations per epoch; pairnum 4 = 1 paired iteration of 2 x 2.
    # Epoch 1 ends at step 2 with a validation on the two rain test pairs (rank 0 scores, every rank waits).
    argv = tiny_argv(data, tmp_path, '--pairnum', '4', '--ema', '0.5', '--val_dir', str(data / 'Test'),
                     '--val_tasks', 'derain')
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'trainer.py',
               *argv, '--max_iters', '3']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Every save checks that the processes hold identical weights, the EMA included (trainer.py raises otherwise).
    state = load_checkpoint(tmp_path / 'ckpt/last.pth')
    assert (state['world_size'], len(state['rng']), state['step'], state['map_ema_updates']) == (2, 2, 3, 3)
    assert (state['epoch'], state['iteration']) == (2, 1)
    assert [r['step'] for r in records(tmp_path)] == [1, 2, 3]  # rank 0 alone logs
    assert [r['paired'] for r in records(tmp_path)] == [True, False, True]
    lines = [json.loads(line) for line in (tmp_path / 'log/metrics.jsonl').read_text().splitlines()]
    validations = [line for line in lines if 'validation' in line]  # the averaged and the raw weights
    assert [(v['step'], v.get('weights', 'ema')) for v in validations] in ([(2, 'ema'), (2, 'raw')],
                                                                            [(2, 'raw'), (2, 'ema')])
    assert all([(r['task'], r['n_images']) for r in v['validation']] == [('derain', 2)] for v in validations)
    best = load_checkpoint(tmp_path / 'ckpt/best.pth')
    assert best['step'] == 2 and best['training']['chosen_by_validation'] is True

    # One process goes on: 1 iteration of 2 x 2 samples used the permutation's first 4, so the epoch continues at
    # iteration 2 of batches of 2 (its last, one sample); pairnum 4 is now 2 paired iterations of one process.
    with pytest.warns(RuntimeWarning, match='written by 2 processes, this run has 1: epoch 2 continues at iteration 2'):
        trainer.main([*argv, '--resume'])
    state = load_checkpoint(tmp_path / 'ckpt/last.pth')
    assert (state['world_size'], state['epoch'], state['iteration'], state['step']) == (1, 3, 0, 4)
    assert [(r['step'], r['paired']) for r in records(tmp_path)] == [(1, True), (2, False), (3, True), (4, False)]
