"""The official-checkpoint converter: files built like the authors' (whole modules of a `model_res` module,
pickled by torch.save) convert to checkpoints that reproduce the original outputs; malicious pickles never run."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from net import Critic, MRCNet, blocks
from tests.fixtures import OFFICIAL_TINY, as_official, model_res_module, save_official
from tests.golden import build_critic, build_mrcnet, filled_state, load_fixture
from utils.checkpoint import CheckpointError, build_map, load_checkpoint, load_network_state, model_spec
from utils.official import (
    UnsafeCheckpointError,
    convert_official,
    infer_critic_patch_size,
    infer_map_config,
    load_any_checkpoint,
    main,
)

REPO = Path(__file__).resolve().parents[1]
@pytest.fixture
def official_file(tmp_path, monkeypatch):
    """An official-format file of a tiny MRCNet (plus one leftover module) and a 32x32 critic, with the
    original map's output on a test image and the critic's weights."""
    torch.manual_seed(0)
    module = model_res_module()
    transport_map = MRCNet(**OFFICIAL_TINY, layer_norm_type='BiasFree', bias=True).eval()
    transport_map.res_patch_embed = blocks.OverlapPatchEmbed(3, OFFICIAL_TINY['dim'], True)  # built, never used
    critic = Critic(32)
    as_official(transport_map, module), as_official(critic, module)
    image = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        expected = transport_map(image)[0]
    path = tmp_path / 'model_allMRCNet128__30_1.0.pth'
    save_official(path, {'epoch': 30, 'Tnet': transport_map, 'Fnet': critic}, module, monkeypatch)
    return path, image, expected, critic.state_dict()


def test_converted_map_reproduces_the_original_output(official_file):
    path, image, expected, critic_state = official_file
    checkpoint, report = convert_official(path)
    assert checkpoint['model'] == model_spec('MRCNet', {
        'inp_channels': 3, 'out_channels': 3, **OFFICIAL_TINY, 'ffn_expansion_factor': 2.66, 'bias': True,
        'layer_norm_type': 'BiasFree'}, critic={'patch_size': 32, 'width': 64})
    assert report.leftover == ['res_patch_embed.proj.weight', 'res_patch_embed.proj.bias']
    assert checkpoint['epoch'] == 30
    network, _ = build_map(checkpoint)
    with torch.no_grad():
        restored = network.eval()(image)[0]
    torch.testing.assert_close(restored, expected, rtol=0, atol=0)
    critic = Critic(32)
    load_network_state(critic, checkpoint['critic'])
    for key, value in critic_state.items():
        torch.testing.assert_close(critic.state_dict()[key], value, rtol=0, atol=0)


def test_command_writes_a_checkpoint_that_loads_with_weights_only(official_file, tmp_path, capsys):
    path, image, expected, _ = official_file
    main([str(path), str(tmp_path / 'converted.pth')])
    assert 'MRCNet' in capsys.readouterr().out
    checkpoint = load_checkpoint(tmp_path / 'converted.pth')  # weights_only=True
    assert not any(key.startswith('res_patch_embed') for key in checkpoint['map'])
    network, report = build_map(checkpoint)
    assert report.leftover == []
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(image)[0], expected, rtol=0, atol=0)


def test_ckpt_accepts_official_files_directly(official_file):
    path = official_file[0]
    checkpoint, note = load_any_checkpoint(path)
    assert checkpoint['model']['backbone'] == 'MRCNet'
    assert 'converted from the official checkpoint' in note and 'res_patch_embed' in note


def test_full_official_key_set_reproduces_the_golden_outputs(tmp_path, monkeypatch):
    """Every official name of the golden fixture, leftovers included, through the converter."""
    fixture = load_fixture()
    module = model_res_module()
    transport_map = as_official(build_mrcnet(fixture), module)
    leftovers = {key: value for key, value in filled_state(fixture['mrcnet_keys']).items()
                 if key not in transport_map.state_dict()}
    for key, value in leftovers.items():  # unused official modules, as plain nn.Module trees
        *path, leaf = key.split('.')
        owner = transport_map
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(leaf, nn.Parameter(value))
    file = tmp_path / 'official.pth'
    save_official(file, {'epoch': 1, 'Tnet': transport_map, 'Fnet': as_official(build_critic(fixture), module)},
                  module, monkeypatch)

    checkpoint, report = convert_official(file)
    assert sorted(report.leftover) == sorted(leftovers)
    config = fixture['mrcnet_config']
    assert checkpoint['model']['args'] == {
        'inp_channels': 3, 'out_channels': 3, 'dim': config['dim'], 'num_blocks': list(config['num_blocks']),
        'num_refinement_blocks': config['num_refinement_blocks'], 'heads': list(config['heads']),
        'ffn_expansion_factor': config['ffn_expansion_factor'], 'bias': config['bias'],
        'layer_norm_type': config['LayerNorm_type']}
    # The weights come through bit for bit; test_golden shows these weights reproduce the official outputs.
    expected = filled_state(fixture['mrcnet_keys'])
    assert checkpoint['map'].keys() == expected.keys() - leftovers.keys()
    for key, value in checkpoint['map'].items():
        assert torch.equal(value, expected[key]), key
    load_network_state(MRCNet(**checkpoint['model']['args']), checkpoint['map'])
    assert checkpoint['model']['critic']['patch_size'] == fixture['critic_patch_size']


@pytest.mark.parametrize('factor, dim', [(2.66, 48), (2.0, 8), (1.5, 16), (3.0, 24)])
def test_config_is_inferred_from_shapes(factor, dim):
    args = dict(dim=dim, num_blocks=(2, 1, 3, 1), num_refinement_blocks=3, heads=(1, 2, 2, 4),
                ffn_expansion_factor=factor, bias=False, layer_norm_type='WithBias')
    with torch.device('meta'):
        state = MRCNet(**args).state_dict()
    backbone, inferred = infer_map_config(state)
    assert backbone == 'MRCNet'
    hidden = [int(dim * 2 ** level * inferred['ffn_expansion_factor']) for level in range(4)]
    assert hidden == [int(dim * 2 ** level * factor) for level in range(4)]
    assert {key: value for key, value in inferred.items() if key != 'ffn_expansion_factor'} == {
        'inp_channels': 3, 'out_channels': 3, **{k: v for k, v in args.items() if k != 'ffn_expansion_factor'}}


def test_critic_patch_size_comes_from_the_first_linear_layer():
    assert infer_critic_patch_size(Critic(64).state_dict()) == 64
    with pytest.raises(CheckpointError, match='fc'):
        infer_critic_patch_size({'fc.weight': torch.zeros(8, 100)})


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize('container', ['torch.save', 'plain pickle'])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, container):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    payload = {'epoch': 1, 'Tnet': _RunsShell(f'touch {marker}'), 'Fnet': None}
    if container == 'torch.save':
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    expected = UnsafeCheckpointError if container == 'torch.save' else CheckpointError
    with pytest.raises(expected, match='system' if container == 'torch.save' else 'zip'):
        convert_official(path)
    with pytest.raises(CheckpointError):
        load_any_checkpoint(path)
    result = subprocess.run([sys.executable, '-m', 'utils.official', str(path), str(tmp_path / 'out.pth')],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and 'error:' in result.stderr
    assert not marker.exists()
    assert not (tmp_path / 'out.pth').exists()


def test_other_files_get_clear_errors(tmp_path, official_file):
    with pytest.raises(CheckpointError, match='does not exist'):
        convert_official(tmp_path / 'missing.pth')
    torch.save({'epoch': 1, 'weights': torch.zeros(2)}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match='"Tnet"'):
        convert_official(tmp_path / 'other.pth')
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(official_file[0].read_bytes()[:5000])
    with pytest.raises(CheckpointError):
        convert_official(truncated)
