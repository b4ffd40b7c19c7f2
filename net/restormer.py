"""Restormer (Zamir et al., CVPR 2022): the plain four-level transformer U-Net, DA-RCOT's baseline map.

Encoder levels 1-3 and a latent at 1/8 resolution, a decoder that concatenates the encoder features, a
refinement stage and a global skip. 26,126,644 parameters at the defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Downsample, OverlapPatchEmbed, Upsample, computing_layout, pad_to_multiple, transformer_stage


class Restormer(nn.Module):
    """Plain Restormer. `forward(x) -> (restored, latent)`; the latent stands in for the residual embedding."""

    size_multiple = 8

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: tuple[int, ...] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: tuple[int, ...] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 layer_norm_type: str = 'WithBias') -> None:
        super().__init__()

        def stage(channels: int, depth: int, num_heads: int) -> nn.Sequential:
            return transformer_stage(channels, depth, num_heads, ffn_expansion_factor, bias, layer_norm_type)

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim, bias)
        self.encoder_level1 = stage(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, num_blocks[3], heads[3])

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, num_blocks[0], heads[0])
        self.refinement = stage(dim * 2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded, (h, w) = pad_to_multiple(x, self.size_multiple)
        padded = computing_layout(padded)
        e1 = self.encoder_level1(self.patch_embed(padded))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        latent = self.latent(self.down3_4(e3))
        d = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), e3], 1)))
        d = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d), e2], 1)))
        d = self.decoder_level1(torch.cat([self.up2_1(d), e1], 1))
        restored = self.output(self.refinement(d)) + padded
        return restored[..., :h, :w].contiguous(), latent.contiguous()
