"""bfloat16 autocast (`--amp on`) against the float64 path, which the golden tests prove equal to the official code.

The bound, from bfloat16's precision: bfloat16 keeps 8 significant bits, unit roundoff u = 2**-8. Under autocast
each convolution and linear layer rounds its input and its weights to bfloat16 (relative error at most u each)
and accumulates in float32 (error negligible beside u); LayerNorm, softmax, the FFT and every loss term stay
float32. A value that passes through L such layers thus carries n = 2L independent roundings. By the
probabilistic error analysis of Higham and Mary (SIAM J. Sci. Comput. 2019, Theorem 2.4), its relative error
is at most lambda sqrt(n) u + O(n u^2) with probability at least 1 - 2 exp(-lambda^2 / 2); with lambda = 5
that is 1 - 7.5e-6 per compared quantity. L is counted, not guessed: the number of Conv2d and Linear calls the
float64 forward makes (both passes of the map; a backward through the critic counts its layers twice). Errors
are compared normwise, over the batch, against the float64 values: the residual x - T(x) (what the network
adds), the critic's scores, the critic's input gradient (the penalty's), and the positive cost terms.
Differences of near-equal numbers (the critic loss, the penalty's ||g|| - 1) have no relative bound and are
covered through their parts.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from data.tasks import DE_TYPES
from net import Critic, MRCNet
from utils.acceleration import for_training
from utils.objective import ObjectiveWeights, map_loss

UNIT_ROUNDOFF = 2.0 ** -8
LAMBDA = 5.0
# (map sizes, critic patch size, seed); every batch holds all eight degradation labels.
CONFIGS = [
    (dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1), 32, 0),
    # Larger: many times slower where bfloat16 is emulated (CPUs without AVX-512-BF16 or AMX).
    pytest.param(dict(dim=8, num_blocks=(1, 2, 1, 2), num_refinement_blocks=2), 64, 7, marks=pytest.mark.slow),
    pytest.param(dict(dim=16, num_blocks=(2, 1, 1, 1), num_refinement_blocks=1, heads=(2, 2, 4, 8)), 32, 3,
                 marks=pytest.mark.slow),
]


def bound(layers: int) -> float:
    """Relative error bound of a value computed through `layers` bfloat16 layers (module docstring)."""
    n = 2 * layers
    return LAMBDA * math.sqrt(n) * UNIT_ROUNDOFF + n * UNIT_ROUNDOFF ** 2


def layer_calls(network: nn.Module, run) -> int:
    """How many Conv2d/Linear calls `run()` makes in `network`."""
    calls = []
    hooks = [module.register_forward_hook(lambda *_: calls.append(1)) for module in network.modules()
             if isinstance(module, (nn.Conv2d, nn.Linear))]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


def forward(transport_map: nn.Module, critic: nn.Module, degraded, clean, labels, amp: bool) -> dict:
    """Everything an iteration computes from the networks, in float64 for comparison."""
    device = torch.device('cpu')
    mapped, scored = for_training(transport_map, device, amp=amp), for_training(critic, device, amp=amp)
    restored, embedding = mapped(degraded)
    probe = clean.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(scored(probe).sum(), probe)
    terms = map_loss(scored(restored), degraded, restored, embedding, labels, clean, ObjectiveWeights())
    values = {'residual': degraded - restored, 'on_clean': scored(clean), 'on_output': scored(restored),
              'critic_input_gradient': gradient, **{name: terms[name] for name in ('pix', 'fourier', 'l1',
                                                                                       'contrastive')}}
    return {name: value.detach().double() for name, value in values.items()}


@pytest.mark.parametrize('sizes, patch, seed', CONFIGS)
def test_bf16_stays_within_its_precision_of_float64(sizes, patch, seed):
    torch.manual_seed(seed)
    transport_map, critic = MRCNet(**sizes), Critic(patch)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(sorted(set(DE_TYPES.values())))
    assert len(labels) == 8
    degraded, clean = (torch.rand(len(labels), 3, patch, patch, generator=generator) for _ in range(2))

    reference = forward(transport_map.double(), critic.double(), degraded.double(), clean.double(), labels, False)
    map_layers = layer_calls(transport_map, lambda: transport_map(degraded.double()))
    critic_layers = layer_calls(critic, lambda: critic(clean.double()))
    assert critic_layers == 13 and map_layers > 20
    layers = {'residual': map_layers, 'on_clean': critic_layers, 'on_output': map_layers + critic_layers,
              'critic_input_gradient': 2 * critic_layers, 'pix': map_layers, 'fourier': map_layers,
              'l1': map_layers, 'contrastive': map_layers}

    bf16 = forward(transport_map.float(), critic.float(), degraded, clean, labels, True)
    for name, expected in reference.items():
        error = (bf16[name] - expected).norm() / expected.norm()
        assert error <= bound(layers[name]), (name, error.item(), bound(layers[name]))
    assert (bf16['residual'] - reference['residual']).norm() / reference['residual'].norm() > UNIT_ROUNDOFF / 16, (
        'the bf16 path ran in float32')
