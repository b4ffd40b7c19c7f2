"""Faults during training: SIGKILL at random moments (also mid checkpoint write), a full disk or unwritable
checkpoint folder, non-finite losses, gradients and weights (also through the gradient penalty), a DDP
process that dies or hangs, and SIGKILL during an evaluation. See RELIABILITY.md for the table these tests back.

The killed runs are forked from one driver interpreter (`python -c ...`), so each restart costs no import of
torch; every child is a complete `trainer.main` run that a SIGKILL ends without any cleanup.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import trainer
from data.image_io import read_rgb, write_rgb
from data.test_sets import find_test_sets
from net import Critic, MRCNet
from tests.fixtures import TERMS, TINY, Identity, tiny_argv, write_test_tree, write_tiny_data
from utils import atomic, checkpoint, distributed, evaluate, monitor, training
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights, gradient_penalty

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp('data'))


# ---------------------------------------------------------------------------------------------- killed training

def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(kind: str, count: int, value: float) -> None:
    """In a child about to train: SIGKILL it at the `count`-th event of `kind`."""
    seen = [0]

    def reached() -> bool:
        seen[0] += 1
        return seen[0] == count

    if kind == 'write':  # a `value` fraction of the checkpoint's bytes is on disk, then the process dies
        real_save = torch.save

        def partial_save(obj, handle, *args, **kwargs):
            if not reached():
                return real_save(obj, handle, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer)
            handle.write(buffer.getvalue()[:int(len(buffer.getvalue()) * value)])
            handle.flush()
            os.fsync(handle.fileno())
            _die()

        checkpoint.torch.save = partial_save
    elif kind == 'renamed':  # right after a checkpoint was renamed into place
        real_replace = os.replace

        def replace(source, target):
            real_replace(source, target)
            if str(target).endswith('.pth') and reached():
                _die()

        atomic.os.replace = replace
    elif kind == 'iteration':  # after an update, before it is logged or saved
        real_iteration = training.ot_iteration

        def iteration(*args, **kwargs):
            terms = real_iteration(*args, **kwargs)
            if reached():
                _die()
            return terms

        training.ot_iteration = iteration
    elif kind == 'timer':  # at an arbitrary moment, `value` seconds after the start
        threading.Timer(value, _die).start()
    elif kind == 'hang':  # stops responding after an update, without dying
        real_iteration = training.ot_iteration

        def stuck(*args, **kwargs):
            terms = real_iteration(*args, **kwargs)
            if reached():
                time.sleep(3600)
            return terms

        training.ot_iteration = stuck
    elif kind == 'image':  # 100 bytes of an evaluation image are on disk, then the process dies
        real_write = evaluate.write_bytes_atomically

        def write_then_die(path, data):
            if not reached():
                return real_write(path, data)

            def cut(handle):
                handle.write(data[:100])
                handle.flush()
                os.fsync(handle.fileno())
                _die()

            atomic.write_atomically(path, cut)

        evaluate.write_bytes_atomically = write_then_die


def _run_child(argv: list[str], kill: list | None) -> int:
    """Forks a child that trains with `argv` (armed with `kill`); returns its wait status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if kill:
                _arm(*kill)
            trainer.main(argv)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def _checkpoints_on_disk(ckpt_dir: Path) -> dict:
    """The step of every .pth in `ckpt_dir` ('ERROR ...' where one does not load) and the partial files there."""
    files = sorted(ckpt_dir.glob('*.pth')) if ckpt_dir.is_dir() else []
    loaded = {}
    for path in files:
        try:
            loaded[path.name] = load_checkpoint(path).get('step', 'export')
        except CheckpointError as error:
            loaded[path.name] = f'ERROR {error}'
    stale = sorted(p.name for p in ckpt_dir.glob('.*.tmp')) if ckpt_dir.is_dir() else []
    return {'files': loaded, 'stale': stale}


def drive_kills(data: str, out: str, seed: int) -> None:
    """Driver (a fresh interpreter): a reference run, then a run killed by a seeded plan and resumed with
    `--resume auto` after each kill until it completes. Prints a JSON report."""
    torch.set_num_threads(1)
    data, out = Path(data), Path(out)
    extra = ('--nEpochs', '3', '--save_every', '1', '--image_every', '100')
    rng = random.Random(seed)
    # The first five kills land whatever the machine's speed (each finds enough work left); the timers land
    # where they land, also after the run has finished.
    # Every save writes last.pth, then its export last_map.pth: the third write is the second save's last.pth.
    plan = [['write', 3, 0.5], ['iteration', 2, 0], ['renamed', 3, 0], ['write', rng.randint(1, 3), rng.random()],
            ['iteration', rng.randint(1, 2), 0], *(['timer', 0, rng.uniform(0.05, 1.0)] for _ in range(3))]
    report = {'reference': _run_child(tiny_argv(data, out / 'reference', *extra), None), 'runs': []}
    for kill in [*plan, None]:
        status = _run_child(tiny_argv(data, out / 'killed', *extra, '--resume', 'auto'), kill)
        report['runs'].append({'kill': kill, 'signal': os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                               'exit': os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                               **_checkpoints_on_disk(out / 'killed' / 'ckpt')})
    print('REPORT ' + json.dumps(report))


def _records(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / 'metrics.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_at_any_moment_loses_nothing_and_resumes_to_the_same_run(data, tmp_path):
    seed = 7
    command = [sys.executable, '-c', 'import sys; from tests.test_reliability_faults import drive_kills; '
               'drive_kills(*sys.argv[1:3], int(sys.argv[3]))', str(data), str(tmp_path), str(seed)]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split('REPORT ', 1)[1])
    assert report['reference'] == 0, result.stderr[-3000:]
    runs = report['runs']
    # Mid-write of the second save, then after an update that was never saved, then three more.
    assert [run['signal'] for run in runs[:5]] == [signal.SIGKILL] * 5, runs
    assert runs[0]['files'] == {'last.pth': 1, 'last_map.pth': 'export'}
    assert runs[1]['files'] == {'last.pth': 2, 'last_map.pth': 'export'}
    assert runs[-1]['exit'] == 0, result.stderr[-3000:]
    for run in runs:  # whatever the moment, every checkpoint on disk is complete and loads
        assert not any(str(step).startswith('ERROR') for step in run['files'].values()), run
        assert run['stale'] == [] or run['signal'] == signal.SIGKILL, run  # a kill may leave one partial file
    assert runs[-1]['stale'] == []  # the next save of the same file removed it

    reference, resumed = tmp_path / 'reference', tmp_path / 'killed'
    expected, got = _records(reference / 'log'), _records(resumed / 'log')
    assert [r['step'] for r in got] == list(range(1, 10))  # one record per step: none lost, none repeated
    scalars = EventAccumulator(str(resumed / 'log')).Reload().Scalars('loss/map')
    assert [event.step for event in scalars] == list(range(1, 10))  # TensorBoard too (purge_step on resume)
    for before, after in zip(expected, got, strict=True):
        assert {k: before.get(k) for k in TERMS} == {k: after.get(k) for k in TERMS}, before['step']
    final, wanted = load_checkpoint(resumed / 'ckpt/last.pth'), load_checkpoint(reference / 'ckpt/last.pth')
    assert final['step'] == wanted['step'] == 9
    for part in ('map', 'critic'):
        for name, value in wanted[part].items():
            assert torch.equal(final[part][name], value), (part, name)
        for key, state in wanted[f'{part}_optimizer']['state'].items():
            assert all(torch.equal(final[f'{part}_optimizer']['state'][key][k], v) for k, v in state.items())
    exported = load_checkpoint(resumed / 'ckpt/last_map.pth')['map']
    assert all(torch.equal(exported[name], value) for name, value in wanted['map'].items())


def test_a_kill_while_a_resume_drops_later_records_keeps_the_earlier_ones(tmp_path):
    log = tmp_path / 'log'
    log.mkdir()
    lines = [json.dumps({'step': step, 'loss': float(step)}) for step in range(1, 5)]
    (log / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
    pid = os.fork()
    if pid == 0:  # resumes from step 2 and dies with the shortened log written but not yet in place
        try:
            atomic.os.replace = lambda *args: _die()
            monitor.Monitor(log, enabled=True, start_step=2, total_steps=4, log_every=1, image_every=1)
        finally:
            os._exit(0)
    assert os.WTERMSIG(os.waitpid(pid, 0)[1]) == signal.SIGKILL
    assert _records(log) == [json.loads(line) for line in lines]  # the old log, whole
    monitor.Monitor(log, enabled=True, start_step=2, total_steps=4, log_every=1, image_every=1).close()
    assert [record['step'] for record in _records(log)] == [1, 2]
    assert not list(log.glob('.*.tmp'))  # the killed writer's temporary was removed by the next write


# ------------------------------------------------------------------------------------------- killed evaluation

def drive_killed_evaluation(test_root: str, save_dir: str) -> None:
    """Driver: two evaluations with --resume, SIGKILLed half-way through their 2nd and 3rd image file writes."""
    torch.set_num_threads(1)
    sets, _ = find_test_sets(test_root, ['derain', 'deblur'])
    statuses = []
    for writes in (2, 3):
        pid = os.fork()
        if pid == 0:
            _arm('image', writes, 0)
            try:
                evaluate.evaluate(Identity(), sets, device='cpu', save_dir=Path(save_dir), resume=True, progress=False)
            finally:
                os._exit(0)
        statuses.append(os.WTERMSIG(os.waitpid(pid, 0)[1]))
    print('REPORT ' + json.dumps(statuses))


@pytest.mark.slow
def test_sigkill_during_evaluation_leaves_complete_files_and_resume_finishes(tmp_path):
    write_test_tree(tmp_path / 'Test')
    out = tmp_path / 'results'
    command = [sys.executable, '-c', 'import sys; from tests.test_reliability_faults import drive_killed_evaluation; '
               'drive_killed_evaluation(*sys.argv[1:3])', str(tmp_path / 'Test'), str(out)]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.split('REPORT ', 1)[1]) == [signal.SIGKILL] * 2
    assert list(out.rglob('.*.png.*.tmp'))  # the cut files are hidden ...
    for path in out.rglob('[!.]*.png'):  # ... and every visible one is complete
        assert read_rgb(path).shape == (21, 30, 3), path
    sets, _ = find_test_sets(tmp_path / 'Test', ['derain', 'deblur'])
    network = Identity()
    resumed = evaluate.evaluate(network, sets, device='cpu', save_dir=out, resume=True, progress=False)
    assert len(network.calls) == 3  # the first image was finished by the second evaluation
    reference = evaluate.evaluate(Identity(), sets, device='cpu', progress=False)
    for got, expected in zip(resumed, reference, strict=True):
        assert {k: v for k, v in got.items() if k != 'seconds_per_image'} == \
            {k: v for k, v in expected.items() if k != 'seconds_per_image'}
    assert not list(out.rglob('.*'))  # redoing an image replaced its partial files


# ----------------------------------------------------------------------------------- full disk, unwritable folder

def _disk_full_after(saves: int):
    """An os.fdopen whose first `saves` checkpoint files (.pth) are real; later ones get /dev/full, which fails
    every write with ENOSPC as a full disk does. Logs keep being written (a disk fills between two files)."""
    real_fdopen, seen = os.fdopen, [0]

    def fdopen(fd, *args, **kwargs):
        if '.pth.' not in os.readlink(f'/proc/self/fd/{fd}'):  # the atomic temporary of a checkpoint
            return real_fdopen(fd, *args, **kwargs)
        seen[0] += 1
        if seen[0] <= saves:
            return real_fdopen(fd, *args, **kwargs)
        os.close(fd)
        return open('/dev/full', 'wb')  # closed by save_checkpoint's with-block

    return fdopen


@pytest.mark.skipif(not Path('/dev/full').exists(), reason='needs /dev/full to fail writes with ENOSPC')
def test_a_full_disk_during_a_save_is_a_clear_error_and_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, 'fdopen', _disk_full_after(4))  # two saves: last.pth and last_map.pth each
    with pytest.raises(OSError, match=r'could not write checkpoint .*last\.pth: No space left.*intact.*--ckpt_dir'):
        trainer.main(tiny_argv(data, tmp_path, '--nEpochs', '1', '--save_every', '1'))
    assert load_checkpoint(tmp_path / 'ckpt/last.pth')['step'] == 2  # the last complete save
    assert sorted(p.name for p in (tmp_path / 'ckpt').iterdir()) == ['last.pth', 'last_map.pth']  # no partial file


def test_an_unwritable_checkpoint_folder_is_a_clear_error(tmp_path, monkeypatch):
    state = {'format': checkpoint.FORMAT, 'version': checkpoint.VERSION, 'map': {}, 'step': 1}
    checkpoint.save_checkpoint(state, tmp_path / 'last.pth')

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied')

    monkeypatch.setattr(atomic.tempfile, 'mkstemp', refuse)  # root ignores chmod, so the refusal is simulated
    with pytest.raises(OSError, match=r'could not write checkpoint .*last\.pth: Permission denied.*--ckpt_dir'):
        checkpoint.save_checkpoint({**state, 'step': 2}, tmp_path / 'last.pth')
    assert load_checkpoint(tmp_path / 'last.pth')['step'] == 1


@pytest.mark.skipif(not Path('/dev/full').exists(), reason='needs /dev/full to fail writes with ENOSPC')
def test_a_full_disk_while_writing_an_image_names_the_image(tmp_path):
    (tmp_path / 'out.png').symlink_to('/dev/full')
    with pytest.raises(OSError, match=r'write_rgb\(.*out\.png\): could not write the image .*disk full'):
        write_rgb(tmp_path / 'out.png', np.zeros((64, 64, 3), np.uint8))


# --------------------------------------------------------------------------------------------- NaN and Inf

def _networks():
    torch.manual_seed(0)
    transport_map, critic = MRCNet(**TINY), Critic(32)
    optimizers = (torch.optim.RMSprop(transport_map.parameters(), lr=1e-3),
                  torch.optim.RMSprop(critic.parameters(), lr=1e-3))
    return transport_map, critic, optimizers


def _weights(network) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in network.parameters()])


def test_a_nan_in_the_critics_input_skips_both_critic_updates_and_never_reaches_the_weights():
    transport_map, critic, (map_optimizer, critic_optimizer) = _networks()
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    clean = y.clone()
    clean[1, 2, 5, 7] = math.nan
    before = _weights(critic)
    with pytest.warns(RuntimeWarning, match='critic step: the loss is nan'), \
            pytest.warns(RuntimeWarning, match='gradient-penalty step: the loss is nan; this update is skipped'):
        terms = ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, x, torch.tensor([0, 1]), clean,
                             y, ObjectiveWeights())
    assert terms['skipped'] == 2 and math.isnan(terms['gp']) and math.isnan(terms['critic_loss'])
    assert torch.equal(_weights(critic), before)  # neither the critic loss nor the penalty touched the critic
    assert torch.isfinite(_weights(transport_map)).all() and math.isfinite(terms['loss'])  # the map step is clean


def test_an_infinite_gradient_with_a_finite_loss_is_skipped():
    transport_map, critic, (map_optimizer, critic_optimizer) = _networks()
    next(transport_map.parameters()).register_hook(lambda grad: grad * math.inf)
    before = _weights(transport_map)
    with pytest.warns(RuntimeWarning, match='map step: a gradient is not finite'):
        terms = ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, torch.rand(2, 3, 32, 32),
                             torch.tensor([0, 1]), torch.rand(2, 3, 32, 32), None, ObjectiveWeights())
    assert terms['skipped'] == 1 and math.isfinite(terms['loss'])
    assert torch.equal(_weights(transport_map), before)
    assert all(p.grad is None for p in transport_map.parameters())  # nothing left for a later step to apply


def test_non_finite_weights_are_never_saved_over_a_good_checkpoint(data, tmp_path, monkeypatch):
    calls = []

    def poisoning(*args, **kwargs):
        terms = ot_iteration(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # finite losses, but the second update leaves an infinite weight behind
            next(args[0].parameters()).data.view(-1)[0] = math.inf
        return terms

    monkeypatch.setattr(training, 'ot_iteration', poisoning)
    with pytest.raises(SystemExit, match=r'non-finite weights after 2 iterations; nothing was saved .*--lr'):
        trainer.main(tiny_argv(data, tmp_path, '--save_every', '1', '--image_every', '100'))
    state = load_checkpoint(tmp_path / 'ckpt/last.pth')
    assert state['step'] == 1 and all(torch.isfinite(value).all() for value in state['map'].values())


def test_the_gradient_penalty_of_a_nan_score_is_nan_not_a_number_that_looks_fine():
    """Defect found: the penalty's input gradient ignores the activations' values, so a critic scoring NaN
    gave a finite penalty (about 10). It is NaN now; a finite batch gives the same penalty as before."""
    torch.manual_seed(0)
    critic, clean, restored = Critic(32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    alpha = torch.rand(2, 1, 1, 1)
    mixed = (alpha * clean + (1 - alpha) * restored).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed)
    expected = 10 * (grad.flatten(1).norm(dim=1) - 1).square().mean().item()
    assert gradient_penalty(critic, clean, restored, alpha).item() == pytest.approx(expected, rel=1e-6)
    clean[1, 0, 3, 3] = math.inf
    assert math.isnan(gradient_penalty(critic, clean, restored, alpha).item())


def test_the_gradient_penalty_of_a_flat_critic_is_finite():
    """A critic with zero input gradient is where the norm's derivative is 0/0: the penalty must stay finite."""
    critic = Critic(32)
    for parameter in critic.parameters():
        torch.nn.init.zeros_(parameter)
    gp = gradient_penalty(critic, torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 1, 1, 1))
    gp.backward()
    assert gp.item() == pytest.approx(10.0)  # weight x (0 - 1)^2
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in critic.parameters())


# ------------------------------------------------------------------------------------ a dying or hanging DDP rank

def drive_failing_rank(data: str, out: str, port: int, failure: str) -> None:
    """Driver: two forked gloo processes train; after its third update rank 1 is SIGKILLed (`failure` 'iteration')
    or stops responding ('hang'). Prints how rank 0 ended and after how many seconds."""
    torch.set_num_threads(1)
    out = Path(out)
    # A silent peer is waited for --ddp_timeout minutes: 12 s here; a dead one not at all.
    argv = tiny_argv(Path(data), out, '--nEpochs', '5', '--ddp_timeout', '0.2' if failure == 'hang' else '1')
    pids = []
    for rank in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2', LOCAL_WORLD_SIZE='2',
                                  MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
                log = os.open(out / f'rank{rank}.log', os.O_WRONLY | os.O_CREAT)
                os.dup2(log, 2)
                if rank == 1:
                    _arm(failure, 3, 0)
                trainer.main(argv)
                code = 0
            except SystemExit as error:
                print(f'SystemExit: {error}', file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    started, deadline = time.monotonic(), time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pids[0], os.WNOHANG)
        if done:
            break
        time.sleep(0.2)
    else:
        os.kill(pids[0], signal.SIGKILL)
        status = os.waitpid(pids[0], 0)[1]
    if not os.waitpid(pids[1], os.WNOHANG)[0]:
        os.kill(pids[1], signal.SIGKILL)  # the hanging one
        os.waitpid(pids[1], 0)
    print('REPORT ' + json.dumps({'seconds': time.monotonic() - started, 'exited': os.WIFEXITED(status),
                                  'code': os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize('failure, error', [
    ('iteration', 'closed by peer|reset by peer|remote worker'),  # killed: its sockets close at once
    ('hang', '[Tt]imed out|[Tt]imeout'),  # alive but silent: --ddp_timeout bounds the wait
])
def test_a_dead_or_hanging_ddp_process_stops_the_other_in_bounded_time(data, tmp_path, failure, error):
    command = [sys.executable, '-c', 'import sys; from tests.test_reliability_faults import drive_failing_rank; '
               'drive_failing_rank(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])', str(data),
               str(tmp_path), str(_free_port()), failure]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split('REPORT ', 1)[1])
    log = (tmp_path / 'rank0.log').read_text()
    assert report['exited'] and report['code'] != 0, (report, log[-3000:])
    assert report['seconds'] < 90, report
    # What to do, with gloo's own error (raised in the collective that waits for the other process) as the cause.
    assert 'process 0: another process died or stopped responding' in log and '--resume auto' in log, log[-3000:]
    assert re.search(error, log), log[-3000:]
    assert load_checkpoint(tmp_path / 'ckpt/last.pth')['step'] >= 1  # what was saved before stays loadable


def test_only_errors_about_lost_processes_are_explained():
    several = distributed.Runtime(torch.device('cpu'), rank=1, world_size=2, local_rank=1)
    with pytest.raises(SystemExit, match=r'process 1: another process died .*closed by peer.*ckpt/x.*--resume auto'):
        with distributed.lost_peers_explained(several, 'ckpt/x'):
            raise RuntimeError('[pair.cc:561] Connection closed by peer [127.0.0.1]:21914')
    with pytest.raises(RuntimeError, match='shape mismatch'):  # any other error passes through unchanged
        with distributed.lost_peers_explained(several, 'ckpt/x'):
            raise RuntimeError('shape mismatch')
    with pytest.raises(RuntimeError, match='closed by peer'):  # and so does everything in a single process
        with distributed.lost_peers_explained(distributed.Runtime(torch.device('cpu')), 'ckpt/x'):
            raise RuntimeError('Connection closed by peer')
