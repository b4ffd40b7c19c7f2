"""MRCNet, the transport map T of DA-RCOT (Tang et al., TPAMI 2025, arXiv 2411.01656), and RCNet (RCOT).

MRCNet is a Restormer U-Net run in two passes with shared weights:

1. Pass 1 restores: T1(x) = decoder(encoder(x)) + x.
2. The *transport residual* r = x - T1(x) (not detached) goes through a residual encoder (the shared patch
   embedding, its own encoder levels 1-3, the shared `down3_4`, its own latent stage) to the *residual
   embedding* R4 at 1/8 resolution, and through a short residual decoder to R3 (1/4) and R2 (1/2).
3. Pass 2 decodes pass 1's encoder features again, adding 0.8 * R4, R3, R2 into the decoder at the
   latent, after decoder level 3 and after decoder level 2: T(x).

The decoder is PromptIR-shaped: before each up-sampling a "level" transformer block (`noise_levelN`) and
a 1x1 reduction. `forward(x) -> (T(x), R4)`.

RCNet (the RCOT map, for ablations) keeps pass 1 and the residual encoder but conditions only at the
latent (L + 0.8 * R4): no residual decoder, no R3 and R2.

Parameter names are the official ones, so released checkpoints load. The official module also builds
layers its forward never uses (`LEFTOVER_PREFIXES`); they are not created here, and the checkpoint
loader accepts and reports them.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import (
    Downsample,
    RestormerEncoder,
    Upsample,
    computing_layout,
    pad_to_multiple,
)

# Modules of the official MRCNet that its forward never calls.
LEFTOVER_PREFIXES = (
    'res_patch_embed.', 'chnl_reduce1.', 'chnl_reduce2.', 'chnl_reduce3.', 'reduce_noise_channel_1.',
    'reduce_noise_channel_2.', 'reduce_noise_channel_3.', 'resdown3_4.', 'resup3_2.', 'resreduce_chan_level2.',
    'resdecoder_level2.', 'resup2_1.', 'resdecoder_level1.',
)


class MRCNet(RestormerEncoder):
    """Multi-scale residual-conditioned network: the DA-RCOT transport map (49,927,630 parameters)."""

    size_multiple = 8
    multi_scale = True
    leftover_prefixes = LEFTOVER_PREFIXES

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: tuple[int, ...] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: tuple[int, ...] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 layer_norm_type: str = 'WithBias', residual_scale: float = 0.8) -> None:
        super().__init__(inp_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, layer_norm_type)
        self.residual_scale = residual_scale

        def conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)

        def add_decoder_level3(prefix: str) -> None:
            """Level 3 of a decoder (1/8 -> 1/4 resolution, with the level-3 skip), under the official names with
            `prefix`: '' for the decoder, 'res' for the residual decoder."""
            for name, module in (('noise_level3', self.block(dim * 8, heads[2])),
                                 ('reduce_noise_level3', conv1x1(dim * 8, dim * 4)), ('up4_3', Upsample(dim * 4)),
                                 ('reduce_chan_level3', conv1x1(dim * 6, dim * 4)),
                                 ('decoder_level3', self.stage(dim * 4, num_blocks[2], heads[2]))):
                setattr(self, prefix + name, module)

        # The encoder (RestormerEncoder) serves pass 1, pass 2 (its features are reused) and, in part, the residual
        # branch.

        # Residual encoder: transport residual r -> residual embedding R4.
        self.resencoder_level1 = self.stage(dim, num_blocks[0], heads[0])
        self.resdown1_2 = Downsample(dim)
        self.resencoder_level2 = self.stage(dim * 2, num_blocks[1], heads[1])
        self.resdown2_3 = Downsample(dim * 2)
        self.resencoder_level3 = self.stage(dim * 4, num_blocks[2], heads[2])
        self.reslatent = self.stage(dim * 8, num_blocks[3], heads[3])

        if self.multi_scale:
            # Residual decoder: R4 -> R3 with its own level 3; R3 -> R2 with the shared decoder level 2.
            add_decoder_level3('res')

        # Decoder, shared by both passes.
        add_decoder_level3('')
        self.noise_level2 = self.block(dim * 4, heads[2])
        self.reduce_noise_level2 = conv1x1(dim * 4, dim * 4)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = conv1x1(dim * 4, dim * 2)
        self.decoder_level2 = self.stage(dim * 2, num_blocks[1], heads[1])
        self.noise_level1 = self.block(dim * 2, heads[2])
        self.reduce_noise_level1 = conv1x1(dim * 2, dim * 2)
        self.add_full_resolution_end(dim, num_blocks[0], num_refinement_blocks, heads[0], out_channels)

    def decode(self, latent: torch.Tensor, skips: tuple[torch.Tensor, ...],
               conditions: tuple[torch.Tensor | None, ...] = (None, None, None)) -> torch.Tensor:
        """Decoder features at full resolution; `conditions` (R4, R3, R2) are added where given."""
        e1, e2, e3 = skips
        r4, r3, r2 = conditions
        d = self._condition(latent, r4)
        d = self.reduce_noise_level3(self.noise_level3(d))
        d = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(d), e3], 1)))
        d = self._condition(d, r3)
        d = self.reduce_noise_level2(self.noise_level2(d))
        d = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d), e2], 1)))
        d = self._condition(d, r2)
        d = self.reduce_noise_level1(self.noise_level1(d))
        return self.full_resolution(d, e1)

    def encode_residual(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Transport residual -> (R4, R3, R2); R3 and R2 are None without the residual decoder."""
        re1 = self.resencoder_level1(self.patch_embed(r))
        re2 = self.resencoder_level2(self.resdown1_2(re1))
        re3 = self.resencoder_level3(self.resdown2_3(re2))
        r4 = self.reslatent(self.down3_4(re3))
        if not self.multi_scale:
            return r4, None, None
        d = self.resreduce_noise_level3(self.resnoise_level3(r4))
        r3 = self.resdecoder_level3(self.resreduce_chan_level3(torch.cat([self.resup4_3(d), re3], 1)))
        r2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(r3), re2], 1)))
        return r4, r3, r2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Degraded B x C x H x W (any H, W) -> (T(x) of the same size, R4 at 1/8 of the padded size)."""
        padded, (h, w) = pad_to_multiple(x, self.size_multiple)
        padded = computing_layout(padded)
        latent, skips = self.encode(padded)
        first_pass = self.output(self.decode(latent, skips)) + padded
        conditions = self.encode_residual(padded - first_pass)
        restored = self.output(self.decode(latent, skips, conditions)) + padded
        return restored[..., :h, :w].contiguous(), conditions[0].contiguous()

    def _condition(self, features: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        return features if residual is None else features + self.residual_scale * residual


class RCNet(MRCNet):
    """The RCOT map: MRCNet conditioned at the latent only (L + 0.8 * R4), for ablations."""

    multi_scale = False
