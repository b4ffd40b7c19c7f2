"""The critic of DA-RCOT: a convolutional Kantorovich potential phi(y) -> one score per image.

Ten 3x3/4x4/5x5 convolutions, five of them stride 2 (P -> P/32), each followed by LeakyReLU(0.2), then
three linear layers. The linear layers are sized for one patch size P, which must be a multiple of 32.
Official names: `features.N`, `fc`, `fc1`, `fc2`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (in, out, kernel, stride, padding, bias) of each convolution, in order; channels in units of `width`
# (the official critic has width 64: 64 -> 128 -> 256 -> 512 -> 512 channels). 0 stands for the RGB input.
_CONVS = (
    (0, 1, 5, 1, 2, True), (1, 1, 4, 2, 1, True),
    (1, 2, 3, 1, 1, True), (2, 2, 4, 2, 1, True),
    (2, 4, 3, 1, 1, True), (4, 4, 4, 2, 1, True),
    (4, 8, 3, 1, 1, False), (8, 8, 4, 2, 1, False),
    (8, 8, 3, 1, 1, False), (8, 8, 4, 2, 1, False),
)
OFFICIAL_WIDTH = 64


class Critic(nn.Module):
    """Kantorovich potential phi for `patch_size` x `patch_size` RGB inputs (a multiple of 32).

    `width` is the first convolution's channels (the official 64); a reduced transport map (`--preset demo`)
    pairs with a reduced critic, which otherwise costs more than the map at small sizes.
    """

    def __init__(self, patch_size: int = 128, width: int = OFFICIAL_WIDTH) -> None:
        super().__init__()
        if patch_size <= 0 or patch_size % 32:
            raise ValueError(f'the critic needs a patch size that is a positive multiple of 32, got {patch_size}; '
                             'change --patch_size (e.g. 64, 128 or 256)')
        if width <= 0:
            raise ValueError(f'the critic needs a positive width, got {width}; change --critic_width (e.g. 64)')
        self.patch_size, self.width = patch_size, width
        layers: list[nn.Module] = []
        for c_in, c_out, kernel, stride, padding, bias in _CONVS:
            layers += [nn.Conv2d(c_in * width or 3, c_out * width, kernel, stride, padding, bias=bias),
                       nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        flat = 8 * width * (patch_size // 32) ** 2
        self.fc = nn.Linear(flat, patch_size ** 2 // 8)
        self.fc1 = nn.Linear(patch_size ** 2 // 8, 64)
        self.fc2 = nn.Linear(64, 1)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Scores of a B x 3 x P x P batch, shape B x 1."""
        if y.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(f'the critic was built for {self.patch_size}x{self.patch_size} patches, '
                             f'got {tuple(y.shape[-2:])}')
        h = self.features(y).flatten(1)  # B x 8width x P/32 x P/32 -> B x 8width(P/32)^2
        h = F.leaky_relu(self.fc1(self.fc(h)), 0.2)
        return self.fc2(h)
