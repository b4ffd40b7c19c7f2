"""The loss terms of the DA-RCOT objective against hand-computed values and against the official per-sample loops."""

import math

import pytest
import torch
from torch import nn

from utils.objective import (
    ObjectiveWeights,
    contrastive_loss,
    critic_loss,
    fourier_cost,
    gradient_penalty,
    map_loss,
    pixel_cost,
)


def test_pixel_cost_is_the_rms_of_the_residual():
    residual = torch.tensor([3.0, -4.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert pixel_cost(residual).item() == pytest.approx(math.sqrt((9 + 16) / 4))


@pytest.mark.parametrize('label, expected', [(1, 2.0), (4, 1.0)])
def test_fourier_cost_of_a_constant_residual(label, expected):
    # A constant c on 2x2 has one spectral line, the DC term 4c: RMS sqrt(16c^2 / 4) = 2c (noise), mean |Z| = c.
    residual = torch.full((1, 3, 2, 2), 0.5)
    assert fourier_cost(residual, torch.tensor([label])).item() == pytest.approx(expected * 0.5)


def test_fourier_cost_sums_the_per_sample_terms():
    torch.manual_seed(0)
    residual, labels = torch.randn(4, 3, 8, 6), torch.tensor([0, 2, 3, 6])
    expected = 0.0
    for r, label in zip(residual, labels, strict=True):  # the official per-sample loop
        spectrum = torch.fft.fft2(r)
        expected += spectrum.abs().square().mean().sqrt() if label < 3 else spectrum.abs().mean()
    assert fourier_cost(residual, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_contrastive_loss_of_two_unit_embeddings():
    embedding = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(2, 2, 1, 1)
    same = (math.exp(-1 / 0.07) + 1) / 2
    different = (math.exp(1 / 0.07) + 1) / 2
    assert contrastive_loss(embedding, torch.tensor([3, 3])).item() == pytest.approx(same)
    assert contrastive_loss(embedding, torch.tensor([3, 4])).item() == pytest.approx(different)


def test_contrastive_loss_matches_the_official_pair_loop_and_is_zero_for_one_sample():
    torch.manual_seed(1)
    embedding, labels = torch.randn(5, 4, 2, 2), torch.tensor([0, 0, 3, 4, 3])
    expected = 0.0
    z = [nn.functional.normalize(e.flatten(), dim=0) for e in embedding]
    for i in range(5):
        for j in range(i + 1, 5):
            sign = -1 if labels[i] == labels[j] else 1
            expected += torch.exp(sign * z[i] * z[j] / 0.07).mean().item()
    assert contrastive_loss(embedding, labels).item() == pytest.approx(expected, rel=1e-6)
    assert contrastive_loss(embedding[:1], labels[:1]).item() == 0


def test_map_loss_combines_its_terms_with_the_weights():
    torch.manual_seed(2)
    degraded, restored, target = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    embedding, labels, scores = torch.randn(3, 4, 1, 1), torch.tensor([1, 3, 5]), torch.randn(3, 1)
    weights = ObjectiveWeights(sigma=0.5, Sigma=7.0)
    paired = map_loss(scores, degraded, restored, embedding, labels, target, weights)
    transport = paired['pix'] + paired['fourier'] + 0.1 * paired['contrastive']
    assert paired['l1'].item() == pytest.approx((restored - target).abs().mean().item())
    assert paired['loss'].item() == pytest.approx((-scores.mean() + 0.5 * transport + 7.0 * paired['l1']).item())
    unpaired = map_loss(scores, degraded, restored, embedding, labels, None, weights)
    assert 'l1' not in unpaired and 'contrastive' not in unpaired
    assert unpaired['loss'].item() == pytest.approx((-scores.mean() + 0.5 * (paired['pix'] + paired['fourier'])).item())
    ablated = map_loss(scores, degraded, restored, embedding, labels, target, ObjectiveWeights(fourier=False))
    assert ablated['fourier'].item() == 0


def test_critic_loss_is_the_negative_transport_estimate():
    assert critic_loss(torch.tensor([[2.0], [4.0]]), torch.tensor([[1.0], [0.0]])).item() == pytest.approx(-2.5)


def test_gradient_penalty_of_a_linear_critic():
    # phi(y) = <w, y> has gradient w everywhere: the penalty is 10 (||w|| - 1)^2 whatever alpha is.
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    nn.init.constant_(critic[1].weight, 0.5)  # ||w|| = 0.5 sqrt(12)
    clean, restored = torch.rand(2, 3, 2, 2), torch.rand(2, 3, 2, 2)
    penalty = gradient_penalty(critic, clean, restored, torch.rand(2, 1, 1, 1))
    assert penalty.item() == pytest.approx(10 * (0.5 * math.sqrt(12) - 1) ** 2, rel=1e-6)
    penalty.backward()
    assert critic[1].weight.grad is not None and torch.isfinite(critic[1].weight.grad).all()
