"""The fast training iteration against the official-order reference (bench/reference.py) and the fixture."""

import copy

import pytest
import torch

from bench.reference import reference_iteration
from net import Critic, MRCNet
from tests.golden import build_critic, build_mrcnet, load_fixture
from utils.iteration import ot_iteration
from utils.objective import ObjectiveWeights

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))


def _run(step, networks, batches, weights):
    transport_map, critic = copy.deepcopy(networks)
    map_optimizer = torch.optim.RMSprop(transport_map.parameters(), lr=5e-5)
    critic_optimizer = torch.optim.RMSprop(critic.parameters(), lr=1e-4)
    history = []
    for degraded, target, labels, alpha, paired in batches:
        history.append(step(transport_map, critic, map_optimizer, critic_optimizer, degraded, labels,
                            clean=target, target=target if paired else None, weights=weights, alpha=alpha))
    return history, transport_map, critic


# float64 shows the two paths compute the same function; in float32 the terms agree to rounding, and the
# weights to 1e-3: RMSprop divides each gradient by its own RMS (its first step moves a weight by 10 x lr
# whatever the gradient's size), so the rounding of a near-zero gradient can flip an update of 1e-4 x 10.
@pytest.mark.parametrize('dtype, term_rel, weight_atol', [(torch.float64, 1e-9, 1e-12), (torch.float32, 1e-4, 1e-3)])
def test_fast_iteration_equals_official_order_for_two_iterations(dtype, term_rel, weight_atol):
    torch.manual_seed(0)
    networks = (MRCNet(**TINY).to(dtype), Critic(32).to(dtype))
    batches = [(torch.rand(3, 3, 32, 32, dtype=dtype), torch.rand(3, 3, 32, 32, dtype=dtype), torch.tensor([0, 3, 3]),
                torch.rand(3, 1, 1, 1, dtype=dtype), paired) for paired in (True, False)]
    weights = ObjectiveWeights(Sigma=10.0)
    fast = _run(ot_iteration, networks, batches, weights)
    reference = _run(reference_iteration, networks, batches, weights)
    for fast_terms, reference_terms in zip(fast[0], reference[0], strict=True):
        for name, value in reference_terms.items():
            assert fast_terms[name] == pytest.approx(value, rel=term_rel, abs=1e-6), name
    for fast_net, reference_net in zip(fast[1:], reference[1:], strict=True):
        for a, b in zip(fast_net.parameters(), reference_net.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=weight_atol)


def test_official_order_reference_matches_the_fixture():
    fixture = load_fixture()
    reference = fixture['iteration']
    networks = (build_mrcnet(fixture), build_critic(fixture))
    batch = [(fixture['degraded'], fixture['target'], fixture['labels'], fixture['alpha'], True)]
    weights = ObjectiveWeights(sigma=reference['sigma'], Sigma=reference['Sigma'])
    (terms,), _, _ = _run(reference_iteration, networks, batch, weights)
    assert terms['loss'] == pytest.approx(reference['paired']['terms']['T_loss'], rel=1e-8)
    assert terms['contrastive'] == pytest.approx(reference['paired']['terms']['contrastive'], rel=1e-8)
