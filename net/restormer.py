"""Restormer (Zamir et al., CVPR 2022): the plain four-level transformer U-Net, DA-RCOT's baseline map.

Encoder levels 1-3 and a latent at 1/8 resolution, a decoder that concatenates the encoder features, a
refinement stage and a global skip. 26,126,644 parameters at the defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import RestormerEncoder, Upsample, computing_layout, pad_to_multiple


class Restormer(RestormerEncoder):
    """Plain Restormer. `forward(x) -> (restored, latent)`; the latent stands in for the residual embedding."""

    size_multiple = 8

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: tuple[int, ...] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: tuple[int, ...] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 layer_norm_type: str = 'WithBias') -> None:
        super().__init__(inp_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, layer_norm_type)

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = self.stage(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = self.stage(dim * 2, num_blocks[1], heads[1])
        self.add_full_resolution_end(dim, num_blocks[0], num_refinement_blocks, heads[0], out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded, (h, w) = pad_to_multiple(x, self.size_multiple)
        padded = computing_layout(padded)
        latent, (e1, e2, e3) = self.encode(padded)
        d = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), e3], 1)))
        d = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d), e2], 1)))
        restored = self.output(self.full_resolution(d, e1)) + padded
        return restored[..., :h, :w].contiguous(), latent.contiguous()
