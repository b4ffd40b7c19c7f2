"""`trainer.py` end to end on a tiny model and a tiny data set (CPU): resume, checkpoints, logs, validation,
the L1 ablation, non-finite steps, and the iteration on its own (batch size 1, a tiny overfit)."""

import json
import math
import shutil
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import trainer
from net import Critic, MRCNet
from options import parse_args
from tests.fixtures import TERMS, TINY, records, tiny_argv, write_tiny_data
from utils import distributed, training
from utils.checkpoint import CheckpointError, build_map, load_checkpoint
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def full_run(data, tmp_path_factory):
    """Two uninterrupted epochs (6 iterations)."""
    out = tmp_path_factory.mktemp('full')
    trainer.main(tiny_argv(data, out))
    return out


def test_resume_mid_epoch_repeats_the_uninterrupted_run(data, full_run, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--resume', 'auto', '--max_iters', '4'))  # auto, empty folder: fresh
    stopped = load_checkpoint(tmp_path / 'ckpt/last.pth')
    assert (stopped['epoch'], stopped['iteration'], stopped['step']) == (2, 1, 4)  # mid-epoch
    trainer.main(tiny_argv(data, tmp_path, '--resume', 'auto'))

    expected, resumed = records(full_run), records(tmp_path)
    assert [r['step'] for r in resumed] == list(range(1, 7))
    for before, after in zip(expected, resumed, strict=True):
        assert {k: before.get(k) for k in TERMS} == {k: after.get(k) for k in TERMS}, before['step']
    final, reference = load_checkpoint(tmp_path / 'ckpt/last.pth'), load_checkpoint(full_run / 'ckpt/last.pth')
    for network in ('map', 'critic'):
        for name, value in reference[network].items():
            assert torch.equal(final[network][name], value), name
    assert final['critic_optimizer']['state'].keys() == reference['critic_optimizer']['state'].keys()


def test_checkpoints_describe_the_run_and_load_without_code(full_run):
    ckpt = full_run / 'ckpt'
    assert sorted(p.name for p in ckpt.iterdir()) == ['epoch_0001.pth', 'epoch_0002.pth', 'last.pth', 'last_map.pth']
    state = load_checkpoint(ckpt / 'last.pth')  # weights_only=True
    assert (state['epoch'], state['iteration'], state['step'], state['world_size']) == (3, 0, 6, 1)
    assert state['model'] == {'backbone': 'MRCNet', 'args': {**{k: list(v) if isinstance(v, tuple) else v
                                                                for k, v in TINY.items()},
                                                             'ffn_expansion_factor': 2.66},
                              'critic': {'patch_size': 32, 'width': 64}}
    assert state['config']['de_type'] == ['denoise_15', 'derain']
    assert state['map_scheduler']['last_epoch'] == 2 and len(state['rng']) == 1
    assert state['map_optimizer']['param_groups'][0]['lr'] == pytest.approx(5e-5)
    export = load_checkpoint(ckpt / 'last_map.pth')
    assert set(export) == {'format', 'version', 'model', 'map', 'config', 'training'}
    float32 = {'amp': 'off', 'dtype': 'float32', 'reason': 'float32 asked for'}
    assert export['training'] == state['training'] == {'steps': 6, 'planned_steps': 6, 'stopped_by': None,
                                                       'precision': float32, 'val_dir': None, 'val_split': 0,
                                                       'chosen_by_validation': False}
    assert json.loads((full_run / 'log/config.json').read_text())['precision'] == float32
    network, report = build_map(export)
    assert str(report) == 'all keys matched'
    with torch.no_grad():
        restored, _ = network(torch.rand(1, 3, 21, 19))
    assert restored.shape == (1, 3, 21, 19)


def test_logs_hold_every_term_the_config_and_images(full_run):
    rows = records(full_run)
    assert [r['paired'] for r in rows] == [True, False, False] * 2
    assert 'l1' in rows[0] and 'l1' not in rows[1] and 'contrastive' not in rows[1]
    assert all(r['skipped'] == 0 and r['data_time'] >= 0 and r['lr_map'] == pytest.approx(5e-5) for r in rows)
    config = json.loads((full_run / 'log/config.json').read_text())
    assert config['batchSize'] == 2 and config['preset'] == 'tiny'
    assert '--preset tiny' in (full_run / 'log/command.txt').read_text()
    events = EventAccumulator(str(full_run / 'log')).Reload()
    tags = events.Tags()
    for tag in ('loss/map', 'loss/critic', 'loss/gradient_penalty', 'ot/transport_distance', 'cost/pix',
                'cost/fourier', 'cost/contrastive', 'loss/l1', 'lr/map', 'lr/critic', 'time/data', 'time/step',
                'train/skipped_updates_total'):
        assert tag in tags['scalars'], tag
    assert [e.step for e in events.Scalars('loss/map')] == list(range(1, 7))
    assert tags['images'] == ['samples/degraded_restored_target_residual']
    assert 'config/text_summary' in tags['tensors']


def test_tensorboard_gets_the_first_and_the_last_iteration_whatever_log_every_is(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--max_iters', '4', '--log_every', '3'))
    events = EventAccumulator(str(tmp_path / 'log')).Reload()
    assert [e.step for e in events.Scalars('loss/map')] == [1, 3, 4]
    trainer.main(tiny_argv(data, tmp_path, '--resume', 'auto', '--log_every', '100'))  # iterations 5 and 6
    events = EventAccumulator(str(tmp_path / 'log')).Reload()
    assert [e.step for e in events.Scalars('loss/map')] == [1, 3, 4, 5, 6]


def test_validation_scores_full_images_and_keeps_the_best(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--nEpochs', '1', '--val_dir', str(data / 'Test'), '--val_tasks',
                           'derain', '--threads', '1'))
    validations = [json.loads(line) for line in (tmp_path / 'log/metrics.jsonl').read_text().splitlines()
                   if 'validation' in line]
    assert len(validations) == 1 and validations[0]['step'] == 3
    (record,) = validations[0]['validation']
    assert (record['task'], record['n_images']) == ('derain', 2) and math.isfinite(record['psnr'])
    best = load_checkpoint(tmp_path / 'ckpt/best.pth')
    assert best['best_psnr'] == pytest.approx(record['psnr']) and (best['epoch'], best['iteration']) == (2, 0)
    assert 'val_psnr/derain/derain' in EventAccumulator(str(tmp_path / 'log')).Reload().Tags()['scalars']
    chosen = load_checkpoint(tmp_path / 'ckpt/best_map.pth')['training']  # test.py warns from these fields
    assert chosen['chosen_by_validation'] and chosen['val_dir'] == str((data / 'Test').resolve())
    assert not load_checkpoint(tmp_path / 'ckpt/last_map.pth')['training']['chosen_by_validation']


def test_val_split_validates_on_held_out_training_images(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--nEpochs', '1', '--val_split', '1'))
    validations = [json.loads(line) for line in (tmp_path / 'log/metrics.jsonl').read_text().splitlines()
                   if 'validation' in line]
    (validation,) = validations
    assert validation['step'] == 2  # 3 samples left: 2 iterations
    assert [(r['task'], r['set'], r['sigma'], r['n_images']) for r in validation['validation']] == [
        ('denoise', 'held-out', 15, 1), ('derain', 'held-out', None, 1)]
    training = load_checkpoint(tmp_path / 'ckpt/best_map.pth')['training']
    assert training['chosen_by_validation'] and training['val_split'] == 1 and training['val_dir'] is None


@pytest.mark.parametrize('keep, kept', [('1', ['epoch_0003.pth']), ('0', []),
                                        ('all', ['epoch_0001.pth', 'epoch_0002.pth', 'epoch_0003.pth'])])
def test_keep_epochs_keeps_only_the_newest_epoch_files(data, tmp_path, keep, kept):
    trainer.main(tiny_argv(data, tmp_path, '--objective', 'l1', '--nEpochs', '3', '--keep_epochs', keep))
    assert sorted(p.name for p in (tmp_path / 'ckpt').glob('epoch_*.pth')) == kept
    assert load_checkpoint(tmp_path / 'ckpt/last.pth')['epoch'] == 4  # always written; a resume starts epoch 4


def test_epoch_files_are_bounded_by_default(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--objective', 'l1', '--nEpochs', '7'))
    kept = sorted(p.name for p in (tmp_path / 'ckpt').glob('epoch_*.pth'))
    assert kept == [f'epoch_{epoch:04d}.pth' for epoch in range(3, 8)]  # the newest five


@pytest.mark.slow
def test_skip_unreadable_reports_the_count_at_every_epoch_end(data, tmp_path, capsys):
    broken = tmp_path / 'data'
    shutil.copytree(data, broken)
    (broken / 'Train/Denoise/clean0.png').write_bytes(b'not a png')
    trainer.main(tiny_argv(broken, tmp_path, '--skip_unreadable'))
    reports = [line for line in capsys.readouterr().out.splitlines() if 'unreadable training samples' in line]
    assert len(reports) == 2 and reports[0].startswith('epoch 1: ') and reports[1].startswith('epoch 2: ')
    counts = [int(line.split(': ')[1].split()[0]) for line in reports]
    assert 0 < counts[0] <= counts[1]


def test_l1_objective_trains_the_map_alone_on_paired_iterations(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--objective', 'l1', '--pairnum', '4', '--nEpochs', '1'))
    rows = records(tmp_path)
    assert [r['paired'] for r in rows] == [True, True]  # the unpaired rest of the epoch is not run
    assert set(rows[0]) >= {'loss', 'l1'} and 'critic_loss' not in rows[0]
    state = load_checkpoint(tmp_path / 'ckpt/last.pth')
    assert 'critic' not in state and 'critic_optimizer' not in state


@pytest.mark.slow
def test_unpaired_critic_sees_independent_clean_patches_unless_asked(data, tmp_path, monkeypatch):
    shown = {}  # run -> what the critic was shown as clean images, per iteration
    for run, extra in (('independent', []), ('official', ['--critic_on_targets'])):
        seen = shown[run] = []

        def spy(*args, seen=seen, **kwargs):
            seen.append(args[6].clone())
            return ot_iteration(*args, **kwargs)

        monkeypatch.setattr(training, 'ot_iteration', spy)
        trainer.main(tiny_argv(data, tmp_path / run, '--nEpochs', '1', *extra))
    independent, targets = shown['independent'], shown['official']  # same batches; official: the batch targets
    assert len(independent) == 3 and torch.equal(independent[0], targets[0])  # paired: the targets in both
    for own, target in zip(independent[1:], targets[1:], strict=True):
        assert own.shape == target.shape and not torch.equal(own, target)


def test_non_finite_steps_are_skipped_and_the_run_stops_after_k(data, tmp_path, monkeypatch):
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:  # from the fourth iteration (epoch 2) on, every loss is NaN
            args = (*args[:4], args[4] * math.nan, *args[5:])
        return ot_iteration(*args, **kwargs)

    monkeypatch.setattr(training, 'ot_iteration', poisoned)
    with pytest.warns(RuntimeWarning, match='update is skipped'), pytest.raises(SystemExit, match='--max_bad_iters 2'):
        trainer.main(tiny_argv(data, tmp_path, '--max_bad_iters', '2'))
    assert [r['skipped'] for r in records(tmp_path)] == [0, 0, 0, 3, 3]
    last, good = load_checkpoint(tmp_path / 'ckpt/last.pth'), load_checkpoint(tmp_path / 'ckpt/epoch_0001.pth')
    assert last['step'] == 4  # saved after one bad iteration, which changed nothing
    for network in ('map', 'critic'):
        assert all(torch.equal(value, good[network][name]) for name, value in last[network].items())


@pytest.mark.slow
def test_ema_averages_applied_map_steps_only_resumes_exactly_and_is_exported(data, tmp_path, monkeypatch):
    decay, weights = 0.5, []  # the map's weights after each iteration

    def poisoned(*args, **kwargs):
        if len(weights) == 4:  # iteration 5: every update of the iteration is skipped, the map's included
            args = (*args[:4], args[4] * math.nan, *args[5:])
        terms = ot_iteration(*args, **kwargs)
        weights.append([p.detach().double().clone() for p in args[0].parameters()])
        return terms

    monkeypatch.setattr(training, 'ot_iteration', poisoned)
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    with pytest.warns(RuntimeWarning, match='update is skipped'):
        trainer.main(tiny_argv(data, full, '--ema', str(decay)))
    applied = weights[:4] + weights[5:]
    expected = applied[0]  # the first update copies the weights, each later one is e <- d e + (1 - d) w
    for step in applied[1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, step, strict=True)]
    reference = load_checkpoint(full / 'ckpt/last.pth')
    assert reference['map_ema_updates'] == 5 and reference['ema_decay'] == decay
    # float32 lerps, one rounding (2^-24 relative) per update of five: 1e-6 of the largest weight bounds them
    for name, value in zip(reference['map_ema'], expected, strict=True):
        torch.testing.assert_close(reference['map_ema'][name].double(), value, rtol=0,
                                   atol=1e-6 * value.abs().max().item() + 1e-12, msg=name)

    weights.clear()
    with pytest.warns(RuntimeWarning, match='update is skipped'):
        trainer.main(tiny_argv(data, cut, '--ema', str(decay), '--max_iters', '3'))
        trainer.main(tiny_argv(data, cut, '--ema', str(decay), '--resume', 'auto'))
    resumed = load_checkpoint(cut / 'ckpt/last.pth')
    assert resumed['map_ema_updates'] == 5
    assert all(torch.equal(resumed['map_ema'][name], value) for name, value in reference['map_ema'].items())

    averaged, raw = (load_checkpoint(full / f'ckpt/last_map{suffix}.pth') for suffix in ('', '_raw'))
    assert averaged['ema_decay'] == decay and 'ema_decay' not in raw
    assert all(torch.equal(averaged['map'][name], value) for name, value in reference['map_ema'].items())
    assert all(torch.equal(raw['map'][name], value) for name, value in reference['map'].items())
    assert any(not torch.equal(reference['map'][name], value) for name, value in reference['map_ema'].items())
    with pytest.raises(CheckpointError, match='no EMA|--ema'):
        trainer.main(tiny_argv(data, cut, '--resume', 'auto'))


def test_validation_with_ema_scores_both_and_keeps_the_average(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--nEpochs', '1', '--ema', '0.5', '--val_dir', str(data / 'Test'),
                           '--val_tasks', 'derain'))
    validations = [json.loads(line) for line in (tmp_path / 'log/metrics.jsonl').read_text().splitlines()
                   if 'validation' in line]
    assert [v.get('weights') for v in validations] == [None, 'raw'] and validations[0]['step'] == 3
    assert validations[0]['mean_psnr'] != validations[1]['mean_psnr']
    best = load_checkpoint(tmp_path / 'ckpt/best.pth')
    assert best['best_psnr'] == pytest.approx(validations[0]['mean_psnr'])
    assert load_checkpoint(tmp_path / 'ckpt/best_map.pth')['ema_decay'] == 0.5
    assert (tmp_path / 'ckpt/best_map_raw.pth').is_file()
    scalars = EventAccumulator(str(tmp_path / 'log')).Reload().Tags()['scalars']
    assert {'val_psnr/mean', 'val_raw_psnr/mean', 'val_raw_psnr/derain/derain'} <= set(scalars)


def test_resuming_with_another_model_size_is_refused(data, full_run, tmp_path):
    with pytest.raises(CheckpointError, match='--dim'):
        trainer.main(tiny_argv(data, tmp_path, '--dim', '16', '--resume', str(full_run / 'ckpt/last.pth')))


@pytest.mark.slow
def test_activation_checkpointing_changes_no_loss_and_bf16_trains(data, full_run, tmp_path):
    trainer.main(tiny_argv(data, tmp_path / 'checkpointing', '--checkpointing', '--max_iters', '3'))
    for plain, checkpointed in zip(records(full_run)[:3], records(tmp_path / 'checkpointing'), strict=True):
        assert [name for name in TERMS if name in checkpointed] == [name for name in TERMS if name in plain]
        for name in (name for name in TERMS if name in plain):  # unpaired records have no l1 or contrastive
            assert checkpointed[name] == pytest.approx(plain[name], rel=1e-5, abs=1e-6), name
    trainer.main(tiny_argv(data, tmp_path / 'bf16', '--amp', '--max_iters', '2'))
    assert all(r['skipped'] == 0 and math.isfinite(r['loss']) for r in records(tmp_path / 'bf16'))


def test_identity_init_starts_next_to_the_identity(data, full_run, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--identity_init', '--max_iters', '1'))
    (first,) = records(tmp_path)
    assert first['skipped'] == 0  # T(x) = x exactly would leave the transport cost without a gradient
    assert 0 < first['pix'] < 0.05 * records(full_run)[0]['pix']


@pytest.mark.slow
def test_cosine_schedule_anneals_both_lrs_over_the_run(data, tmp_path):
    trainer.main(tiny_argv(data, tmp_path, '--lr_schedule', 'cosine', '--nEpochs', '3'))
    rows = records(tmp_path)  # three iterations per epoch; lr x (1 + cos(pi epoch / 3)) / 2
    assert [r['lr_map'] for r in rows] == pytest.approx([5e-5] * 3 + [3.75e-5] * 3 + [1.25e-5] * 3)
    assert [r['lr_critic'] for r in rows] == pytest.approx([1e-4] * 3 + [7.5e-5] * 3 + [2.5e-5] * 3)


def test_max_minutes_stops_the_run():
    config = parse_args(['--preset', 'tiny', '--max_minutes', '1'])
    sync = distributed.GradientSync(distributed.Runtime(torch.device('cpu')))
    assert training.stop_reason(config, 5, time.monotonic(), sync) is None
    assert training.stop_reason(config, 5, time.monotonic() - 61, sync) == '--max_minutes 1 reached'


@pytest.mark.parametrize('paired', [True, False])
def test_an_iteration_works_on_a_batch_of_one(paired):
    torch.manual_seed(0)
    transport_map, critic = MRCNet(**TINY), Critic(32)
    map_optimizer = torch.optim.RMSprop(transport_map.parameters(), lr=5e-5)
    critic_optimizer = torch.optim.RMSprop(critic.parameters(), lr=1e-4)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    terms = ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, x, torch.tensor([3]), y,
                         y if paired else None, ObjectiveWeights())
    assert terms['skipped'] == 0 and all(math.isfinite(v) for v in terms.values())
    assert terms.get('contrastive', 0.0) == 0.0  # no pair in a batch of one


@pytest.mark.slow
def test_a_tiny_overfit_run_lowers_the_loss():
    torch.manual_seed(0)
    transport_map, critic = MRCNet(**TINY), Critic(32)
    map_optimizer = torch.optim.Adam(transport_map.parameters(), lr=2e-3)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=1e-4)
    y = torch.rand(2, 3, 32, 32)
    x = (y + 0.1 * torch.randn_like(y)).clamp(0, 1)
    l1 = [ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, x, torch.tensor([1, 1]), y, y,
                       ObjectiveWeights())['l1'] for _ in range(12)]
    assert l1[-1] < 0.7 * l1[0]
    assert l1[-1] < (x - y).abs().mean().item()  # better than handing back the noisy input
