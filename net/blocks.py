"""Restormer building blocks (Zamir et al., "Restormer", CVPR 2022), as DA-RCOT's MRCNet uses them.

Bottom-up: the channel LayerNorm -> MDTA (multi-Dconv head transposed attention) -> GDFN (gated-Dconv
feed-forward network) -> the transformer block -> patch embedding, down- and up-sampling -> the encoder that
every map shares.

Attribute names follow the official DA-RCOT code (`norm1.body`, `attn.qkv_dwconv`, `ffn.project_in`,
`body.0`, ...) so that released checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

LAYER_NORM_TYPES = ('WithBias', 'BiasFree')


class _ChannelNormBody(nn.Module):
    """LayerNorm of a B x C x H x W map over its channels, eps 1e-5, with or without a bias.

    Holds the official `body.weight`/`body.bias`. The biased variant runs as one fused `F.layer_norm` on a
    B x H x W x C view (no copies; about 3x faster than reshaping to B x HW x C and reducing by hand).
    """

    def __init__(self, channels: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            channels_last = x.permute(0, 2, 3, 1)  # B x C x H x W -> B x H x W x C (a view)
            return F.layer_norm(channels_last, self.weight.shape, self.weight, self.bias, 1e-5).permute(0, 3, 1, 2)
        # The bias-free variant scales by the standard deviation without centring (Restormer's BiasFree).
        var = x.var(1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight[:, None, None]


class LayerNorm(nn.Module):
    """Channel LayerNorm ('WithBias' or 'BiasFree'): normalises each pixel's C-vector."""

    def __init__(self, channels: int, layer_norm_type: str = 'WithBias') -> None:
        super().__init__()
        if layer_norm_type not in LAYER_NORM_TYPES:
            raise ValueError(f'LayerNorm type must be one of {LAYER_NORM_TYPES}, got {layer_norm_type!r}')
        self.body = _ChannelNormBody(channels, with_bias=layer_norm_type == 'WithBias')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: attention across channels, linear in the pixel count."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, channels, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        # B x 3C x H x W -> B x HW x 3 x heads x c: a view for channels-last input (a copy for NCHW).
        q, k, v = qkv.permute(0, 2, 3, 1).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        attn = cosine_logits(q, k, self.temperature).softmax(dim=-1)
        out = torch.einsum('bhij,bphj->bphi', attn, v).reshape(b, h, w, channels).permute(0, 3, 1, 2)
        # `out` is channels-last; hand NCHW back where NCHW came in.
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return self.project_out(out if channels_last else out.contiguous())


def _recording(*tensors: torch.Tensor) -> bool:
    """Whether eager autograd records this call, where the hand-written backwards below pay off; torch.compile
    traces the plain operations instead (and fuses them itself)."""
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
            and not torch.compiler.is_compiling())


NORMALIZE_EPS = 1e-12  # F.normalize's floor under a norm


def _cosine(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q_i.k_j / (|q_i| |k_j|), |q|, |k|) of B x HW x heads x c, the norms over the pixels and at least
    F.normalize's eps."""
    q_norm, k_norm = (torch.linalg.vector_norm(x, dim=1).clamp_min(NORMALIZE_EPS) for x in (q, k))  # B x heads x c
    return torch.einsum('bphi,bphj->bhij', q, k) / (q_norm[..., :, None] * k_norm[..., None, :]), q_norm, k_norm


class _CosineLogits(torch.autograd.Function):
    """MDTA's logits, whose backward adds the norms' share into the products' gradient in place (autograd would
    multiply into a new tensor and then add it: two more passes over q and over k)."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        cosine, q_norm, k_norm = _cosine(q, k)
        ctx.save_for_backward(q, k, q_norm, k_norm, cosine, temperature)
        return cosine * temperature

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, q_norm, k_norm, cosine, temperature = ctx.saved_tensors
        grad_temperature = (grad * cosine).sum((0, 2, 3)).view_as(temperature)
        grad_cosine = grad * temperature
        # The products' gradient in q's precision (bf16 under autocast, as autograd's own einsum backward).
        grad_product = (grad_cosine / (q_norm[..., :, None] * k_norm[..., None, :])).to(q.dtype)
        # d cosine_ij / d|q_i| = -cosine_ij / |q_i| and d|q_i| / dq_i = q_i / |q_i| (0 where the eps clamped |q_i|).
        weighted = grad_cosine * cosine
        q_share = -weighted.sum(-1) / q_norm.square() * (q_norm > NORMALIZE_EPS)
        k_share = -weighted.sum(-2) / k_norm.square() * (k_norm > NORMALIZE_EPS)
        grad_q = torch.einsum('bhij,bphj->bphi', grad_product, k).addcmul_(q, q_share[:, None])
        grad_k = torch.einsum('bhij,bphi->bphj', grad_product, q).addcmul_(k, k_share[:, None])
        return grad_q, grad_k, grad_temperature


def cosine_logits(q: torch.Tensor, k: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """MDTA's logits t * q_i.k_j / (|q_i| |k_j|) from q and k (B x HW x heads x c). Restormer L2-normalises q and k
    over the pixels (F.normalize) before the c x c products; dividing each product by the norms instead is the
    same attention at a fraction of the memory traffic, a division per product rather than per pixel."""
    if _recording(q, k, temperature):
        return _CosineLogits.apply(q, k, temperature)
    return _cosine(q, k)[0] * temperature


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: gelu(x1) * x2 on a depth-wise-convolved expansion."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(gated_gelu(self.dwconv(self.project_in(x))))


class _GatedGELU(torch.autograd.Function):
    """gelu(y1) * y2 whose backward writes the gradients of both halves into one tensor: autograd's own
    `chunk` backward concatenates them, one more pass over GDFN's widest activation."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y.chunk(2, dim=1)
        gelu = F.gelu(y1)
        ctx.save_for_backward(y, gelu)  # what autograd would keep: y (whose views gelu and mul read) and gelu(y1)
        return gelu * y2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        y, gelu = ctx.saved_tensors
        y1, y2 = y.chunk(2, dim=1)
        grad_y = torch.empty_like(y)
        grad_y1, grad_y2 = grad_y.chunk(2, dim=1)
        torch.mul(grad, gelu, out=grad_y2)
        torch.mul(grad, y2, out=grad_y1)
        torch.ops.aten.gelu_backward.grad_input(grad_y1, y1, grad_input=grad_y1)
        return grad_y


def gated_gelu(y: torch.Tensor) -> torch.Tensor:
    """GDFN's gate on the channel halves of `y`: gelu(y1) * y2 (the custom backward where eager autograd records)."""
    if _recording(y):
        return _GatedGELU.apply(y)
    y1, y2 = y.chunk(2, dim=1)
    return F.gelu(y1) * y2


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + MDTA(norm(x)), then x + GDFN(norm(x)).

    With `checkpointing` set (see `set_activation_checkpointing`), a training forward keeps only the block's
    input and recomputes its insides during backward: the same numbers for much less memory.
    """

    checkpointing = False

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                 layer_norm_type: str) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layer_norm_type)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, layer_norm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(self._body, x, use_reentrant=False)
        return self._body(x)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def set_activation_checkpointing(network: nn.Module, enabled: bool = True) -> None:
    """Turns activation checkpointing of every transformer block in `network` on or off."""
    for module in network.modules():
        if isinstance(module, TransformerBlock):
            module.checkpointing = enabled


# --identity_init scales the map's output convolution by this: T(x) starts next to x. Not to 0: at T(x) = x
# exactly, the transport cost's square root has no gradient (0/0) and every map step would be skipped.
IDENTITY_INIT_SCALE = 1e-2


def start_near_identity(transport_map: nn.Module, scale: float = IDENTITY_INIT_SCALE) -> None:
    """Scales the map's last convolution (`output`, whose result every map adds to its input) by `scale`, so
    that T(x) starts next to x (`--identity_init`)."""
    with torch.no_grad():
        for parameter in transport_map.output.parameters():
            parameter.mul_(scale)


def transformer_stage(dim: int, depth: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                      layer_norm_type: str) -> nn.Sequential:
    """`depth` transformer blocks at one resolution (an encoder, decoder, latent or refinement level)."""
    return nn.Sequential(*(TransformerBlock(dim, num_heads, ffn_expansion_factor, bias, layer_norm_type)
                           for _ in range(depth)))


class OverlapPatchEmbed(nn.Module):
    """Overlapped patch embedding: a 3x3 convolution from the image to `embed_dim` features."""

    def __init__(self, in_channels: int = 3, embed_dim: int = 48, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halves the resolution and doubles the channels: 3x3 conv C -> C/2, then PixelUnshuffle(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Doubles the resolution and halves the channels: 3x3 conv C -> 2C, then PixelShuffle(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RestormerEncoder(nn.Module):
    """The encoder every map starts from, under the official names: the patch embedding, levels 1-3 (each halving
    the resolution and doubling the channels) and the latent stage at 1/8. A map subclasses it, adds its decoder
    down to 1/2, and ends with `add_full_resolution_end` (decoder level 1, refinement, output convolution).
    """

    def __init__(self, inp_channels: int, dim: int, num_blocks: tuple[int, ...], heads: tuple[int, ...],
                 ffn_expansion_factor: float, bias: bool, layer_norm_type: str) -> None:
        super().__init__()
        self.block_options = (ffn_expansion_factor, bias, layer_norm_type)  # of every transformer block of the map
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim, bias)
        self.encoder_level1 = self.stage(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = self.stage(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = self.stage(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = self.stage(dim * 8, num_blocks[3], heads[3])

    def stage(self, channels: int, depth: int, num_heads: int) -> nn.Sequential:
        """`depth` transformer blocks on `channels` channels, with the map's block options."""
        return transformer_stage(channels, depth, num_heads, *self.block_options)

    def block(self, channels: int, num_heads: int) -> TransformerBlock:
        """One transformer block on `channels` channels, with the map's block options."""
        return TransformerBlock(channels, num_heads, *self.block_options)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Image -> (latent L at 1/8, encoder features (E1, E2, E3) at 1, 1/2, 1/4)."""
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        return self.latent(self.down3_4(e3)), (e1, e2, e3)

    def add_full_resolution_end(self, dim: int, depth: int, refinement_depth: int, num_heads: int,
                                out_channels: int) -> None:
        """Registers, last as the official classes do, the up-sampling from 1/2, decoder level 1 (on 2 dim channels:
        the up-sampled features beside E1), the refinement stage and the output convolution."""
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = self.stage(dim * 2, depth, num_heads)
        self.refinement = self.stage(dim * 2, refinement_depth, num_heads)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=self.block_options[1])

    def full_resolution(self, d: torch.Tensor, e1: torch.Tensor) -> torch.Tensor:
        """Decoder features at 1/2 and E1 -> refined features at full size (before the output convolution)."""
        return self.refinement(self.decoder_level1(torch.cat([self.up2_1(d), e1], 1)))


def computing_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` in the memory layout a map computes in: channels-last on the CPU, the layout it has elsewhere.

    On the CPU (oneDNN) the depth-wise 3x3 convolutions of MDTA and GDFN run 2-3x faster on channels-last
    tensors, forward and backward, on AVX2 and AVX-512 alike, and the channel LayerNorm and MDTA's head split
    become views instead of copies (BENCHMARKS.md). Only the summation order inside the kernels changes. CUDA
    tensors keep their layout: the gain was not measured there.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == 'cpu' else x


def _exporting() -> bool:
    """Whether `torch.export` (the ONNX exporter) is tracing this call; torch.compiler.is_exporting needs torch 2.6."""
    is_exporting = getattr(torch.compiler, 'is_exporting', None)
    return bool(is_exporting and is_exporting())


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pads the bottom and right of `x` so H and W are multiples of `multiple`.

    Returns the padded tensor and the original (H, W) to crop back to. Reflection needs the pad to be
    smaller than the side, so very small images are padded in several reflect steps.
    """
    h, w = x.shape[-2:]
    # Written as (rounded-up size - size), so that a symbolic trace (ONNX export) sees a multiple of `multiple`.
    pad_h, pad_w = (h + multiple - 1) // multiple * multiple - h, (w + multiple - 1) // multiple * multiple - w
    if _exporting():  # an exported graph takes sides longer than their pads (utils.export: >= 16): one step
        torch._check(pad_h < h)
        torch._check(pad_w < w)
        return F.pad(x, (0, pad_w, 0, pad_h), mode='reflect'), (h, w)
    while pad_h or pad_w:
        step_h, step_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
        if step_h == 0 and step_w == 0:
            # A 1-pixel side cannot be reflected: repeat it instead.
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
            break
        x = F.pad(x, (0, step_w, 0, step_h), mode='reflect')
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x, (h, w)
