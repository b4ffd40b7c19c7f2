"""Faster training forwards: bfloat16 autocast (`--amp`) and `torch.compile` (`--compile`).

Both wrap a network for the training steps only; the plain network keeps the weights, so its state dict,
checkpoints and validation are unchanged. Activation checkpointing (`--checkpointing`) lives in the network
itself (`net.set_activation_checkpointing`).
"""

from __future__ import annotations

import torch
from torch import nn

from utils.precision import autocast


class Autocast(nn.Module):
    """Runs `network` under bfloat16 autocast and hands back float32 outputs, so every loss term stays float32."""

    def __init__(self, network: nn.Module, device_type: str) -> None:
        super().__init__()
        self.network = network
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        with autocast(self.device_type, True):
            output = self.network(x)
        return tuple(t.float() for t in output) if isinstance(output, tuple) else output.float()


def for_training(network: nn.Module, device: torch.device, *, amp: bool, compile: bool = False) -> nn.Module:
    """The callable that training steps use for `network`. Only the map may be compiled: the critic's
    gradient penalty differentiates twice, which `torch.compile` does not support."""
    if compile:
        network = torch.compile(network)
    return Autocast(network, device.type) if amp else network
