"""The training iteration in the official code's order: the baseline that the fast path is measured against.

The official DA-RCOT loop runs two full forwards of the map per iteration (one under no_grad for the
critic steps, one for the map step), recomputes the latent in pass 2, and computes the Fourier and
contrastive terms in Python loops over the batch; its channel LayerNorm reshapes to B x HW x C and reduces
by hand, its attention reshapes q, k and v and normalises q and k, its feed-forward gate goes through
autograd's chunk, and the whole map computes in the NCHW layout. This module does the same, written
plainly, so the benchmark can time it beside `utils.iteration.ot_iteration` and the tests can check that
both give the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from einops import rearrange
from torch import nn

from data.tasks import NOISE_IDS
from net import MRCNet, blocks
from utils.objective import ObjectiveWeights, critic_loss, gradient_penalty


def _official_layer_norm(body: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The official channel LayerNorm: B x C x H x W -> B x HW x C, mean and variance by hand, and back."""
    h, w = x.shape[-2:]
    pixels = rearrange(x, 'b c h w -> b (h w) c')
    var = pixels.var(-1, keepdim=True, unbiased=False)
    if body.bias is None:
        normalised = pixels / torch.sqrt(var + 1e-5) * body.weight
    else:
        normalised = (pixels - pixels.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-5) * body.weight + body.bias
    return rearrange(normalised, 'b (h w) c -> b c h w', h=h, w=w)


def _official_attention(attention: blocks.MDTA, x: torch.Tensor) -> torch.Tensor:
    """The official MDTA: q, k, v reshaped to B x heads x c x HW, attention by `@`, reshaped back."""
    h, w = x.shape[-2:]
    q, k, v = attention.qkv_dwconv(attention.qkv(x)).chunk(3, dim=1)
    q, k, v = (rearrange(t, 'b (head c) h w -> b head c (h w)', head=attention.num_heads) for t in (q, k, v))
    q, k = nn.functional.normalize(q, dim=-1), nn.functional.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * attention.temperature).softmax(dim=-1)
    return attention.project_out(rearrange(attn @ v, 'b head c (h w) -> b (head c) h w', h=h, w=w))


def _official_feed_forward(feed_forward: blocks.GDFN, x: torch.Tensor) -> torch.Tensor:
    """The official GDFN: the gate through autograd's own chunk, gelu and product."""
    x1, x2 = feed_forward.dwconv(feed_forward.project_in(x)).chunk(2, dim=1)
    return feed_forward.project_out(nn.functional.gelu(x1) * x2)


@contextlib.contextmanager
def official_blocks() -> Iterator[None]:
    """Runs every channel LayerNorm, MDTA and GDFN the official way inside the block (same numbers, the
    official speed); the map stays in the NCHW layout, as `encode`/`decode` are called directly."""
    originals = blocks._ChannelNormBody.forward, blocks.MDTA.forward, blocks.GDFN.forward
    blocks._ChannelNormBody.forward, blocks.MDTA.forward, blocks.GDFN.forward = (
        _official_layer_norm, _official_attention, _official_feed_forward)
    try:
        yield
    finally:
        blocks._ChannelNormBody.forward, blocks.MDTA.forward, blocks.GDFN.forward = originals


def official_order_forward(model: MRCNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MRCNet's forward as the official code runs it: pass 2 recomputes the latent, LayerNorms by hand."""
    with official_blocks():
        latent, skips = model.encode(x)
        first_pass = model.output(model.decode(latent, skips)) + x
        conditions = model.encode_residual(x - first_pass)
        latent_again = model.latent(model.down3_4(skips[2]))
        return model.output(model.decode(latent_again, skips, conditions)) + x, conditions[0]


def looped_fourier_cost(residual: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    total = residual.new_zeros(())
    for r, label in zip(residual, labels.tolist(), strict=True):
        spectrum = torch.fft.fft2(r)
        if label in NOISE_IDS:
            total = total + spectrum.abs().square().mean().sqrt()
        else:
            total = total + spectrum.abs().mean()
    return total


def looped_contrastive_loss(embedding: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    total = embedding.new_zeros(())
    z = [e.flatten() / e.flatten().norm().clamp_min(1e-12) for e in embedding]
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            sign = -1.0 if labels[i] == labels[j] else 1.0
            total = total + torch.exp(sign * z[i] * z[j] / temperature).mean()
    return total


def reference_iteration(transport_map: MRCNet, critic: nn.Module, map_optimizer: torch.optim.Optimizer,
                        critic_optimizer: torch.optim.Optimizer, degraded: torch.Tensor, labels: torch.Tensor,
                        clean: torch.Tensor, target: torch.Tensor | None, weights: ObjectiveWeights,
                        alpha: torch.Tensor) -> dict[str, float]:
    """One iteration in the official order; same arguments and terms as `ot_iteration` (no NaN guard)."""
    with torch.no_grad():
        frozen_output, _ = official_order_forward(transport_map, degraded)

    critic_optimizer.zero_grad()
    loss_critic = critic_loss(critic(clean), critic(frozen_output))
    loss_critic.backward()
    critic_optimizer.step()

    critic_optimizer.zero_grad()
    gp = gradient_penalty(critic, clean, frozen_output, alpha, weights.gradient_penalty)
    gp.backward()
    critic_optimizer.step()

    critic.requires_grad_(False)
    map_optimizer.zero_grad()
    restored, embedding = official_order_forward(transport_map, degraded)
    residual = degraded - restored
    terms = {'critic_on_output': critic(restored).mean(), 'pix': residual.pow(2).mean().sqrt(),
             'fourier': looped_fourier_cost(residual, labels)}
    loss = -terms['critic_on_output'] + weights.sigma * (terms['pix'] + terms['fourier'])
    if target is not None:
        terms['contrastive'] = looped_contrastive_loss(embedding, labels, weights.temperature)
        terms['l1'] = (restored - target).abs().mean()
        loss = loss + weights.sigma * weights.contrastive * terms['contrastive'] + weights.Sigma * terms['l1']
    terms['loss'] = loss
    loss.backward()
    map_optimizer.step()
    critic.requires_grad_(True)
    values = {name: value.item() for name, value in terms.items()}
    values.update(critic_loss=loss_critic.item(), gp=gp.item())
    return values
