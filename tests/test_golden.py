"""Golden tests: the official DA-RCOT implementation's numbers, reproduced to round-off (float64, CPU)."""

import pytest
import torch

from tests.golden import build_critic, build_mrcnet, load_fixture, relative_error
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights


def test_mrcnet_matches_official_outputs():
    fixture = load_fixture()
    model = build_mrcnet(fixture)
    with torch.no_grad():
        restored, embedding = model(fixture['degraded'])
    assert restored.shape == fixture['restored'].shape
    assert embedding.shape == fixture['residual_embedding'].shape
    assert relative_error(restored, fixture['restored']) <= 1e-9
    assert relative_error(embedding, fixture['residual_embedding']) <= 1e-9


def test_critic_matches_official_scores():
    fixture = load_fixture()
    critic = build_critic(fixture)
    with torch.no_grad():
        scores = critic(fixture['target']).squeeze(1)
    assert relative_error(scores, fixture['critic_on_target']) <= 1e-9


@pytest.mark.parametrize('mode', ['paired', 'unpaired'])
def test_one_training_iteration_matches_official(mode):
    fixture = load_fixture()
    reference = fixture['iteration']
    transport_map, critic = build_mrcnet(fixture), build_critic(fixture)
    map_optimizer = torch.optim.RMSprop(transport_map.parameters(), lr=reference['T_lr'])
    critic_optimizer = torch.optim.RMSprop(critic.parameters(), lr=reference['lr'])
    weights = ObjectiveWeights(sigma=reference['sigma'], Sigma=reference['Sigma'])
    target = fixture['target']
    # The fixture's unpaired iteration shows the critic the batch's own targets.
    terms = ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, fixture['degraded'],
                         fixture['labels'], clean=target, target=target if mode == 'paired' else None,
                         weights=weights, alpha=fixture['alpha'])

    expected = reference[mode]
    official_names = {'loss': 'T_loss'}
    names = ('critic_loss', 'gp', 'critic_on_output', 'pix', 'fourier', 'loss')
    for name in names + (('contrastive', 'l1') if mode == 'paired' else ()):
        reference_value = expected['terms'][official_names.get(name, name)]
        assert terms[name] == pytest.approx(reference_value, rel=1e-8), name
    assert terms['skipped'] == 0
    for network, sums in ((transport_map, expected['mrcnet_param_sums']), (critic, expected['critic_param_sums'])):
        for name, param in network.named_parameters():
            total, absolute = sums[name]
            assert param.sum().item() == pytest.approx(total, rel=1e-8, abs=1e-12), name
            assert param.abs().sum().item() == pytest.approx(absolute, rel=1e-8), name
