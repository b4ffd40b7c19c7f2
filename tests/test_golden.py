"""Golden tests: the official DA-RCOT implementation's numbers, reproduced to round-off.

In float64 the tolerance is 1e-9 (relative, max-abs over the tensor) on the CPU and on CUDA. In float32
the networks stay within 1e-5 of the float64 reference on the CPU (measured: 3e-6); on CUDA, where
convolutions and matrix products may use TF32 (10-bit mantissa), within 1e-2. bf16 autocast is compared with
the float64 path, under a bound derived from bf16's precision, in `tests/test_bf16.py`.
"""

import pytest
import torch

from tests.golden import build_critic, build_mrcnet, load_fixture, relative_error
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
DEVICES = ['cpu', pytest.param('cuda', marks=[pytest.mark.gpu, CUDA])]
FLOAT32_TOLERANCE = {'cpu': 1e-5, 'cuda': 1e-2}


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_networks_match_official_outputs(device, dtype):
    fixture = load_fixture()
    model, critic = build_mrcnet(fixture).to(device, dtype), build_critic(fixture).to(device, dtype)
    with torch.no_grad():
        restored, embedding = model(fixture['degraded'].to(device, dtype))
        scores = critic(fixture['target'].to(device, dtype)).squeeze(1)
    assert restored.shape == fixture['restored'].shape
    assert embedding.shape == fixture['residual_embedding'].shape
    tolerance = 1e-9 if dtype == torch.float64 else FLOAT32_TOLERANCE[device]
    for actual, name in ((restored, 'restored'), (embedding, 'residual_embedding'), (scores, 'critic_on_target')):
        assert relative_error(actual.cpu().double(), fixture[name]) <= tolerance, name


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mode', ['paired', 'unpaired'])
def test_one_training_iteration_matches_official(device, mode):
    fixture = load_fixture()
    reference = fixture['iteration']
    transport_map, critic = build_mrcnet(fixture).to(device), build_critic(fixture).to(device)
    map_optimizer = torch.optim.RMSprop(transport_map.parameters(), lr=reference['T_lr'])
    critic_optimizer = torch.optim.RMSprop(critic.parameters(), lr=reference['lr'])
    weights = ObjectiveWeights(sigma=reference['sigma'], Sigma=reference['Sigma'])
    target = fixture['target'].to(device)
    # The fixture's unpaired iteration shows the critic the batch's own targets.
    terms = ot_iteration(transport_map, critic, map_optimizer, critic_optimizer, fixture['degraded'].to(device),
                         fixture['labels'].to(device), clean=target, target=target if mode == 'paired' else None,
                         weights=weights, alpha=fixture['alpha'].to(device))

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
