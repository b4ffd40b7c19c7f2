"""PromptIR, the official third backbone: the official forward's numbers (`promptir_reference.pt`), its names, its
unused modules, its size rule, training with it, and its released PyTorch Lightning checkpoints through test.py."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from data.image_io import write_rgb
from net import Critic, PromptIR
from options import check_map_size, parse_args
from tests.golden import build_promptir, constructor_args, filled_state, load_promptir_fixture, relative_error
from utils import official
from utils.checkpoint import CheckpointError, load_checkpoint, load_network_state
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('darcot_test_script', REPO / 'test.py')
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

UNUSED = ('chnl_reduce1.', 'chnl_reduce2.', 'chnl_reduce3.', 'reduce_noise_channel_1.', 'reduce_noise_channel_2.',
          'reduce_noise_channel_3.')
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
DEVICES = ['cpu', pytest.param('cuda', marks=[pytest.mark.gpu, CUDA])]

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('device', DEVICES)
def test_the_float64_forward_matches_the_official_outputs(device):
    fixture = load_promptir_fixture()
    model = build_promptir(fixture).to(device)
    with torch.no_grad():
        restored, embedding = model(fixture['degraded'].to(device))
    assert restored.shape == fixture['restored'].shape and embedding.shape == fixture['prompt_embedding'].shape
    # Float64 round-off over a few dozen layers of sums of a few thousand products stays near 1e-14 (measured on
    # the CPU: 2.6e-14 on `restored`, whose values reach 5.8, and 4.6e-18 on the prompt); 1e-9 no bug could meet.
    for actual, name in ((restored, 'restored'), (embedding, 'prompt_embedding')):
        assert (actual.cpu() - fixture[name]).abs().max().item() <= 1e-9, name


def test_the_float32_forward_stays_next_to_the_float64_one():
    fixture = load_promptir_fixture()
    model = build_promptir(fixture).float()
    with torch.no_grad():
        restored, embedding = model(fixture['degraded'].float())
    # float32 has a 6e-8 unit round-off; the same chains of sums give errors near 1e-6 of the largest value.
    assert relative_error(restored.double(), fixture['restored']) <= 1e-5
    assert relative_error(embedding.double(), fixture['prompt_embedding']) <= 1e-5


def test_the_names_and_shapes_are_the_official_ones_less_the_unused_modules():
    fixture = load_promptir_fixture()
    with torch.device('meta'):
        model = PromptIR(**constructor_args(fixture['promptir_config']))
    ours = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    official = {name: tuple(shape) for name, shape in fixture['promptir_keys'].items() if not name.startswith(UNUSED)}
    assert ours == official
    assert len(official) < len(fixture['promptir_keys'])


def test_the_full_official_state_dict_loads_reporting_exactly_the_unused_modules():
    fixture = load_promptir_fixture()
    state = filled_state(fixture['promptir_keys'])
    model = PromptIR(**constructor_args(fixture['promptir_config'])).double()
    report = load_network_state(model, state)
    assert sorted(report.leftover) == sorted(name for name in state if name.startswith(UNUSED))
    assert str(report) == ('ignored 6 keys of unused official modules (chnl_reduce1, chnl_reduce2, chnl_reduce3, '
                           'reduce_noise_channel_1, reduce_noise_channel_2, reduce_noise_channel_3)')
    assert torch.equal(model.state_dict()['prompt3.prompt_param'], state['prompt3.prompt_param'])
    # Only PromptIR's own unused modules are ignored: one of MRCNet's is an error here.
    with pytest.raises(CheckpointError, match='1 unexpected: res_patch_embed.proj.weight'):
        load_network_state(model, dict(state, **{'res_patch_embed.proj.weight': torch.zeros(48, 3, 3, 3)}))


def test_the_parameter_count_at_the_defaults_is_the_papers():
    with torch.device('meta'):
        model = PromptIR()
    # The official class has 35,592,263: its unused modules hold 215,296 more (promptir_keys).
    assert sum(p.numel() for p in model.parameters()) == 35_376_967
    unused = sum(torch.Size(shape).numel() for name, shape in load_promptir_fixture()['promptir_keys'].items()
                 if name.startswith(UNUSED))
    assert unused == 215_296


@pytest.mark.parametrize('dim', [8, 24, 64])
def test_another_dim_is_a_clear_error(dim, capsys):
    with pytest.raises(ValueError, match=f'--dim {dim}: PromptIR needs --dim 48'):
        PromptIR(dim=dim)
    with pytest.raises(SystemExit):
        check_map_size(parse_args(['--backbone', 'PromptIR', '--dim', str(dim)]))
    assert 'PromptIR needs --dim 48' in capsys.readouterr().err


def test_the_trainer_builds_it_at_its_defaults():
    config = parse_args(['--backbone', 'PromptIR'])
    assert config.dim == 48
    check_map_size(config)  # no SystemExit


TINY = dict(num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)


def test_one_training_iteration_uses_the_prompt_as_embedding():
    torch.manual_seed(0)
    transport_map, critic = PromptIR(**TINY), Critic(32, 8)
    degraded, target = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    labels = torch.tensor([0, 0, 3])
    _, embedding = transport_map(degraded)
    assert embedding.shape == (3, 320, 4, 4)
    terms = ot_iteration(transport_map, critic, torch.optim.RMSprop(transport_map.parameters(), lr=1e-5),
                         torch.optim.RMSprop(critic.parameters(), lr=1e-4), degraded, labels, clean=target,
                         target=target, weights=ObjectiveWeights())
    assert terms['skipped'] == 0 and terms['contrastive'] > 0
    assert all(torch.isfinite(torch.tensor(value)) for value in terms.values())


def lightning_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What PyTorch Lightning saves for PromptIR's LightningModule (`self.net = PromptIR(decoder=True)`)."""
    first = next(iter(state.values()))
    return {
        'epoch': 7, 'global_step': 1234, 'pytorch-lightning_version': '2.0.1',
        'state_dict': {f'net.{name}': value for name, value in state.items()},
        'loops': {'fit_loop': {'epoch_loop.state_dict': {'_batches_that_stepped': 1234}}},
        'callbacks': {"ModelCheckpoint{'monitor': None}": {'best_model_path': '', 'kth_value': torch.tensor(1.0)}},
        'optimizer_states': [{'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.zeros_like(first)}},
                              'param_groups': [{'lr': 2e-4, 'params': [0]}]}],
        'lr_schedulers': [{'base_lrs': [2e-4], 'last_epoch': 7, 'warmup_epochs': 15}],
    }


def test_a_lightning_checkpoint_restores_what_its_model_does(tmp_path, capsys):
    fixture = load_promptir_fixture()
    source = build_promptir(fixture)  # the tiny config: test.py must read it from the shapes
    path = tmp_path / 'model.ckpt'
    torch.save(lightning_checkpoint(filled_state(fixture['promptir_keys'])), path)
    loaded, described, checkpoint = test_script.load_map(path, torch.device('cpu'))
    assert isinstance(loaded, PromptIR) and checkpoint['model']['args'] == {
        **constructor_args(fixture['promptir_config']), 'num_blocks': [1, 1, 1, 1], 'heads': [1, 2, 4, 8]}
    assert 'read from the Lightning checkpoint model.ckpt (epoch 7, global step 1234, Lightning 2.0.1' in described
    assert 'ignored 6 keys of unused official modules' in described and 'PromptIR, dim 48' in described
    x = fixture['degraded'][:, :, :27, :30]  # padded to 32 x 32 and cropped back
    with torch.no_grad():
        expected, got = source.float()(x.float()), loaded.eval()(x.float())
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # the same float32 weights and arithmetic

    image = tmp_path / 'photo.png'
    write_rgb(image, (fixture['degraded'][0].permute(1, 2, 0) * 255).round().byte().numpy())
    assert test_script.main(['--ckpt', str(path), '--input', str(image), '--output', str(tmp_path / 'out'),
                             '--amp', 'off', '--no_progress']) == 0
    assert 'PromptIR, dim 48' in capsys.readouterr().out and (tmp_path / 'out/restored/photo.png').is_file()


def test_the_converter_command_writes_a_checkpoint_of_a_lightning_file(tmp_path, capsys):
    fixture = load_promptir_fixture()
    torch.save(lightning_checkpoint(filled_state(fixture['promptir_keys'])), tmp_path / 'model.ckpt')
    official.main([str(tmp_path / 'model.ckpt'), str(tmp_path / 'converted.pth')])
    assert 'PromptIR' in capsys.readouterr().out
    converted = load_checkpoint(tmp_path / 'converted.pth')  # weights_only=True
    assert converted['epoch'] == 7 and converted['map'].keys() == build_promptir(fixture).state_dict().keys()


def test_a_lightning_checkpoint_of_another_module_is_refused_clearly(tmp_path):
    fixture = load_promptir_fixture()
    content = lightning_checkpoint(filled_state(fixture['promptir_keys']))
    content['state_dict']['loss_fn.weight'] = torch.zeros(1)
    torch.save(content, tmp_path / 'other.ckpt')
    with pytest.raises(SystemExit, match="1 keys outside 'net.' \\(loss_fn.weight\\)"):
        test_script.load_map(tmp_path / 'other.ckpt', torch.device('cpu'))


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_lightning_checkpoint_holding_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'pwned'
    fixture = load_promptir_fixture()
    content = lightning_checkpoint(filled_state(fixture['promptir_keys']))
    content['hyper_parameters'] = {'opt': _RunsShell(f'touch {marker}')}
    torch.save(content, tmp_path / 'evil.ckpt')
    with pytest.raises(SystemExit, match='refused and nothing in the file was executed'):
        test_script.load_map(tmp_path / 'evil.ckpt', torch.device('cpu'))
    assert not marker.exists()


def test_trainer_trains_it_and_test_py_scores_the_result(tmp_path):
    import trainer
    from tests.fixtures import tiny_argv, write_tiny_data

    data = write_tiny_data(tmp_path / 'data')
    trainer.main(tiny_argv(data, tmp_path / 'run', '--backbone', 'PromptIR', '--dim', '48', '--max_iters', '2'))
    loaded, described, checkpoint = test_script.load_map(tmp_path / 'run/ckpt/last_map.pth', torch.device('cpu'))
    assert isinstance(loaded, PromptIR) and checkpoint['training']['steps'] == 2 and 'PromptIR, dim 48' in described
