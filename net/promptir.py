"""PromptIR (Potlapalli et al., "PromptIR: Prompting for All-in-One Blind Image Restoration", NeurIPS 2023), the
third backbone of the official DA-RCOT trainer (`--backbone PromptIR`).

A Restormer U-Net whose decoder is steered by learned prompts. Before each up-sampling of the decoder:

1. a *prompt-generation block* (PGM, `promptN`) pools the decoder features to a C-vector, turns it into
   softmax weights over 5 learned prompt components, sums the components with them, resizes the sum
   bilinearly to the features' size and mixes it with a 3x3 convolution: the prompt P;
2. a *prompt-interaction block* (PIM) concatenates features and prompt, runs one transformer block over them
   (`noise_levelN`) and reduces the channels back with a 1x1 convolution (`reduce_noise_levelN`).

`forward(x) -> (T(x), P3)`: the restored image and the level-3 prompt at 1/8 of the (padded) size, which the
official DA-RCOT trainer uses as the embedding of its contrastive term.

Parameter names are the official ones (`PromptIR(decoder=True)`), so released checkpoints load. The official
class sizes its prompts for dim 48 only, and builds 1x1 convolutions its forward never calls
(`leftover_prefixes`): they are not created here, and the checkpoint loader accepts and reports them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import RestormerEncoder, TransformerBlock, Upsample, computing_layout, pad_to_multiple

OFFICIAL_DIM = 48  # the only --dim the official prompt sizes fit
PROMPT_LENGTH = 5  # prompt components per level
# (prompt channels, prompt side) of levels 1, 2, 3, as the official class hard-codes them.
PROMPT_SHAPES = ((64, 64), (128, 32), (320, 16))


class PromptGenBlock(nn.Module):
    """Prompt generation: features B x C x H x W -> a prompt B x D x H x W (the official `PromptGenBlock`).

    Holds `prompt_param` (1 x N x D x S x S: N components of D channels, S x S), `linear_layer` (C -> N) and
    `conv3x3` (D -> D, no bias).
    """

    def __init__(self, channels: int, prompt_dim: int, prompt_size: int, prompt_length: int = PROMPT_LENGTH) -> None:
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_length, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(channels, prompt_length)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.linear_layer(x.mean(dim=(-2, -1))).softmax(dim=1)  # B x C -> B x N
        prompt = torch.einsum('bn,ndhw->bdhw', weights, self.prompt_param[0])  # B x D x S x S
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return self.conv3x3(computing_layout(prompt))


class PromptIR(RestormerEncoder):
    """PromptIR with prompts in the decoder (the official `decoder=True`); dim must be 48."""

    size_multiple = 8
    # Modules of the official class that its forward never calls.
    leftover_prefixes = ('chnl_reduce1.', 'chnl_reduce2.', 'chnl_reduce3.', 'reduce_noise_channel_1.',
                         'reduce_noise_channel_2.', 'reduce_noise_channel_3.')

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = OFFICIAL_DIM,
                 num_blocks: tuple[int, ...] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: tuple[int, ...] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 layer_norm_type: str = 'WithBias') -> None:
        if dim != OFFICIAL_DIM:
            raise ValueError(f'--dim {dim}: PromptIR needs --dim {OFFICIAL_DIM} (the official class sizes its prompts '
                             f'for {OFFICIAL_DIM} channels)')
        super().__init__(inp_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, layer_norm_type)

        def conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)

        def prompt_level(channels: int, prompt_shape: tuple[int, int], c_out: int
                         ) -> tuple[PromptGenBlock, TransformerBlock, nn.Conv2d]:
            """The PGM on `channels` features, and the PIM: a transformer block on features + prompt, a 1x1 conv."""
            prompt_dim, prompt_size = prompt_shape
            interaction = self.block(channels + prompt_dim, heads[2])
            return PromptGenBlock(channels, prompt_dim, prompt_size), interaction, conv1x1(channels + prompt_dim, c_out)

        shape1, shape2, shape3 = PROMPT_SHAPES
        # Level 3: prompt from the latent (8 dim), up to 1/4; level 2: from decoder level 3 (4 dim), up to 1/2;
        # level 1: from decoder level 2 (2 dim), up to full size.
        self.prompt3, self.noise_level3, self.reduce_noise_level3 = prompt_level(dim * 8, shape3, dim * 4)
        self.up4_3 = Upsample(dim * 4)
        self.reduce_chan_level3 = conv1x1(dim * 6, dim * 4)
        self.decoder_level3 = self.stage(dim * 4, num_blocks[2], heads[2])
        self.prompt2, self.noise_level2, self.reduce_noise_level2 = prompt_level(dim * 4, shape2, dim * 4)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = conv1x1(dim * 4, dim * 2)
        self.decoder_level2 = self.stage(dim * 2, num_blocks[1], heads[1])
        self.prompt1, self.noise_level1, self.reduce_noise_level1 = prompt_level(dim * 2, shape1, dim * 2)
        self.add_full_resolution_end(dim, num_blocks[0], num_refinement_blocks, heads[0], out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Degraded B x C x H x W (any H, W) -> (T(x) of the same size, P3: B x 320 x H/8 x W/8 of the padded size)."""
        padded, (h, w) = pad_to_multiple(x, self.size_multiple)
        padded = computing_layout(padded)
        d, (e1, e2, e3) = self.encode(padded)
        prompt3 = self.prompt3(d)
        d = self.reduce_noise_level3(self.noise_level3(torch.cat([d, prompt3], 1)))  # 8 dim + 320 -> 4 dim
        d = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(d), e3], 1)))
        d = self.reduce_noise_level2(self.noise_level2(torch.cat([d, self.prompt2(d)], 1)))  # 4 dim + 128 -> 4 dim
        d = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d), e2], 1)))
        d = self.reduce_noise_level1(self.noise_level1(torch.cat([d, self.prompt1(d)], 1)))  # 2 dim + 64 -> 2 dim
        restored = self.output(self.full_resolution(d, e1)) + padded
        return restored[..., :h, :w].contiguous(), prompt3.contiguous()
