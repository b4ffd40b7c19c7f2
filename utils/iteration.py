"""One DA-RCOT training iteration, in the official order: critic step, gradient-penalty step, map step.

T(x) is computed once and reused: the map is frozen during both critic steps, so the critic sees exactly
the numbers that a separate frozen forward would give (the golden test holds this), at a third of the
cost of the official two forwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn

from .objective import ObjectiveWeights, critic_loss, gradient_penalty, map_loss


class Sync(Protocol):
    """What an update needs from the other processes (`utils.distributed.GradientSync`); None: a single one."""

    def all_true(self, flag: bool) -> bool: ...

    def average(self, parameters: list[nn.Parameter]) -> None: ...


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: Iterable[nn.Parameter],
            what: str, sync: Sync | None = None) -> bool:
    """Backward and step, unless the loss or a gradient is not finite (then the update is skipped).

    With `sync`, gradients are averaged over the processes and the skip decision is taken jointly, so every
    process applies the same update or none.
    """
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if not (sync.all_true(finite) if sync else finite):
        reason = 'the loss is not finite on another process' if finite else f'the loss is {loss.item()}'
        warnings.warn(f'{what}: {reason}; this update is skipped', RuntimeWarning, stacklevel=3)
        return False
    loss.backward()
    parameters = list(parameters)
    if sync:
        sync.average(parameters)
    grad_norm = nn.utils.clip_grad_norm_(parameters, float('inf'))
    if not torch.isfinite(grad_norm):
        warnings.warn(f'{what}: a gradient is not finite; this update is skipped', RuntimeWarning, stacklevel=3)
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


def ot_iteration(transport_map: nn.Module, critic: nn.Module, map_optimizer: torch.optim.Optimizer,
                 critic_optimizer: torch.optim.Optimizer, degraded: torch.Tensor, labels: torch.Tensor,
                 clean: torch.Tensor, target: torch.Tensor | None, weights: ObjectiveWeights,
                 alpha: torch.Tensor | None = None, sync: Sync | None = None) -> dict[str, float]:
    """Runs one iteration and returns its terms, each computed in its own step before that step's update.

    `clean` is what the critic sees as real images: the batch's targets in a paired iteration, an
    independent clean batch in an unpaired one. `target` None makes the iteration unpaired. `alpha`
    (B x 1 x 1 x 1) fixes the gradient-penalty interpolation; by default it is drawn uniformly.
    `skipped` counts updates dropped because a loss or gradient was not finite, `map_skipped` (0 or 1) whether
    the map's was one of them. `sync` averages the gradients over processes (see `_update`).
    """
    critic.requires_grad_(True)
    restored, embedding = transport_map(degraded)
    frozen_output = restored.detach()

    on_clean, on_output = critic(clean), critic(frozen_output)
    loss_critic = critic_loss(on_clean, on_output)
    updated = [_update(critic_optimizer, loss_critic, critic.parameters(), 'critic step', sync)]

    if alpha is None:
        alpha = torch.rand(len(clean), 1, 1, 1, device=clean.device, dtype=clean.dtype)
    gp = gradient_penalty(critic, clean, frozen_output, alpha, weights.gradient_penalty)
    updated.append(_update(critic_optimizer, gp, critic.parameters(), 'gradient-penalty step', sync))

    critic.requires_grad_(False)
    terms = map_loss(critic(restored), degraded, restored, embedding, labels, target, weights)
    updated.append(_update(map_optimizer, terms['loss'], transport_map.parameters(), 'map step', sync))
    critic.requires_grad_(True)

    values = {name: value.item() for name, value in terms.items()}
    values.update(critic_loss=loss_critic.item(), gp=gp.item(), transport_distance=-loss_critic.item(),
                  skipped=updated.count(False), map_skipped=int(not updated[-1]))
    return values


def l1_iteration(transport_map: nn.Module, map_optimizer: torch.optim.Optimizer, degraded: torch.Tensor,
                 target: torch.Tensor, sync: Sync | None = None) -> dict[str, float]:
    """One map step on the paired L1 term alone: no critic and no transport cost (the ablation baseline)."""
    restored, _ = transport_map(degraded)
    loss = (restored - target).abs().mean()
    updated = _update(map_optimizer, loss, transport_map.parameters(), 'map step', sync)
    return {'loss': loss.item(), 'l1': loss.item(), 'skipped': int(not updated), 'map_skipped': int(not updated)}
