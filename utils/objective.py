"""The DA-RCOT objective: a max-min neural optimal-transport problem between degraded and clean images.

With x degraded, y clean, T the transport map (returning T(x) and the residual embedding R4) and phi
the critic (Kantorovich potential), each term is a pure function of tensors:

- transport residual  r = x - T(x)
- `pixel_cost`        sqrt(mean r^2) over the whole batch
- `fourier_cost`      sum_i f_i with Z_i = fft2(r_i) (unnormalised, per channel): f_i = sqrt(mean |Z_i|^2)
                      for noise (ids 0-2), mean |Z_i| otherwise -- the degradation-aware transport cost
- `contrastive_loss`  on z_i = R4_i flattened and L2-normalised, over pairs i < j: exp(-z_i z_j / tau) for
                      the same degradation, exp(+z_i z_j / tau) otherwise, element-wise means, summed
- `map_loss`          paired:   -mean phi(T(x)) + sigma (pix + fourier + 0.1 contrastive) + Sigma mean|T(x) - y|
                      unpaired: -mean phi(T(x)) + sigma (pix + fourier)
- `critic_loss`       -mean phi(y) + mean phi(T(x))   (T(x) detached by the caller)
- `gradient_penalty`  10 mean_b (||grad phi(alpha y + (1 - alpha) T(x))||_2 - 1)^2

All terms are vectorised over the batch (the official code loops over samples in Python).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from data.tasks import NOISE_IDS


@dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of the objective; `sigma` and `Sigma` are the paper's flags of the same names."""

    sigma: float = 1.0  # transport cost (pix + fourier + contrastive)
    Sigma: float = 10000.0  # paired L1 fidelity (the paper's capital Sigma)
    contrastive: float = 0.1
    temperature: float = 0.07
    gradient_penalty: float = 10.0
    fourier: bool = True  # False drops the Fourier term (an ablation)


def pixel_cost(residual: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of the transport residual over the whole batch."""
    return residual.pow(2).mean().sqrt()


def fourier_cost(residual: torch.Tensor, labels: torch.Tensor, noise_ids: tuple[int, ...] = NOISE_IDS
                 ) -> torch.Tensor:
    """Degradation-aware Fourier residual cost, summed over the batch.

    Noise is white: its spectrum is flat, so the RMS of the spectrum is used; the other degradations are
    structured and get the mean spectral magnitude (an L1 norm, which favours sparse spectra).
    """
    spectrum = torch.fft.fft2(residual)  # B x C x H x W, complex, unnormalised
    power = spectrum.real.square() + spectrum.imag.square()
    rms = power.flatten(1).mean(1).sqrt()
    magnitude = spectrum.abs().flatten(1).mean(1)
    is_noise = torch.isin(labels, torch.tensor(noise_ids, device=labels.device))
    return torch.where(is_noise, rms, magnitude).sum()


def contrastive_loss(embedding: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Pulls residual embeddings of the same degradation together and pushes different ones apart.

    Element-wise, as the official code: for each pair i < j the mean over k of exp(-+ z_i[k] z_j[k] / tau).
    A batch of one has no pair and contributes zero.
    """
    z = nn.functional.normalize(embedding.flatten(1), dim=1)  # B x K
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    products = z[i] * z[j]  # pairs x K
    sign = torch.where(labels[i] == labels[j], -1.0, 1.0).to(z.dtype).unsqueeze(1)
    return torch.exp(sign * products / temperature).mean(1).sum()


def map_loss(critic_on_output: torch.Tensor, degraded: torch.Tensor, restored: torch.Tensor,
             embedding: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None,
             weights: ObjectiveWeights) -> dict[str, torch.Tensor]:
    """Loss of the transport map and its named terms; `target` None means an unpaired iteration."""
    residual = degraded - restored
    terms = {
        'critic_on_output': critic_on_output.mean(),
        'pix': pixel_cost(residual),
        'fourier': fourier_cost(residual, labels) if weights.fourier else residual.new_zeros(()),
    }
    if target is None:
        transport = terms['pix'] + terms['fourier']
        terms['loss'] = -terms['critic_on_output'] + weights.sigma * transport
        return terms
    terms['contrastive'] = contrastive_loss(embedding, labels, weights.temperature)
    terms['l1'] = (restored - target).abs().mean()
    transport = terms['pix'] + terms['fourier'] + weights.contrastive * terms['contrastive']
    terms['loss'] = -terms['critic_on_output'] + weights.sigma * transport + weights.Sigma * terms['l1']
    return terms


def critic_loss(critic_on_clean: torch.Tensor, critic_on_output: torch.Tensor) -> torch.Tensor:
    """Negative estimate of the transport distance: -mean phi(y) + mean phi(T(x))."""
    return critic_on_output.mean() - critic_on_clean.mean()


def gradient_penalty(critic: nn.Module, clean: torch.Tensor, restored: torch.Tensor, alpha: torch.Tensor,
                     weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP penalty on points between clean and restored images; differentiable in the critic."""
    mixed = (alpha * clean + (1 - alpha) * restored.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    penalty = weight * (grad.flatten(1).norm(dim=1) - 1).square().mean()
    # The input gradient of convolutions and leaky ReLUs does not depend on the activations' values, so a NaN
    # score still gives a finite penalty: make it NaN, so that its update is skipped and the log shows it.
    return torch.where(torch.isfinite(scores).all(), penalty, penalty.new_tensor(math.nan))
