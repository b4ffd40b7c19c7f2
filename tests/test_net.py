"""The networks: shapes at any size, gradients, determinism, parameter counts, official-name loading."""

import pytest
import torch

import net.mrcnet
import net.promptir
import net.restormer
from net import MODELS, Critic, MRCNet, set_activation_checkpointing
from net.blocks import MDTA, LayerNorm, cosine_logits, gated_gelu, pad_to_multiple
from tests.golden import filled_state, load_fixture
from utils.checkpoint import CheckpointError, load_network_state

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))
EMBEDDING_CHANNELS = {'PromptIR': 320}  # the level-3 prompt; the others' latent has 8 dim channels


def tiny(name: str) -> dict:
    """A tiny size of the network `name`: PromptIR's prompts fit dim 48 only."""
    return dict(TINY, dim=48) if name == 'PromptIR' else TINY


@pytest.mark.parametrize('name', list(MODELS))
@pytest.mark.parametrize('size', [(1, 1), (5, 7), (17, 33), (32, 32)])
def test_output_keeps_any_input_size(name, size):
    torch.manual_seed(0)
    model = MODELS[name](**tiny(name)).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        restored, embedding = model(x)
    assert restored.shape == x.shape
    assert embedding.shape[:2] == (1, EMBEDDING_CHANNELS.get(name, 64))
    assert torch.isfinite(restored).all()


def test_padding_does_not_change_an_aligned_image():
    torch.manual_seed(0)
    model = MRCNet(**TINY).eval()
    x = torch.rand(2, 3, 16, 24)
    padded, size = pad_to_multiple(x, 8)
    assert padded is x and size == (16, 24)
    with torch.no_grad():
        whole, _ = model(x)
        first, _ = model(x[:1])
    torch.testing.assert_close(whole[:1], first)  # batch items are independent


@pytest.mark.parametrize('name', list(MODELS))
def test_every_parameter_gets_a_finite_gradient(name):
    torch.manual_seed(0)
    model = MODELS[name](**tiny(name))
    restored, embedding = model(torch.rand(2, 3, 16, 16))
    (restored.square().mean() + embedding.square().mean()).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


def test_critic_gradients_and_shape():
    torch.manual_seed(0)
    critic = Critic(32)
    scores = critic(torch.rand(3, 3, 32, 32))
    assert scores.shape == (3, 1)
    scores.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in critic.parameters())


@pytest.mark.parametrize('width', [8, 16, 64])
def test_critic_width_scales_every_convolution_and_keeps_the_official_names(width):
    critic = Critic(64, width)
    channels = [m.out_channels for m in critic.features if isinstance(m, torch.nn.Conv2d)]
    assert channels == [width, width, 2 * width, 2 * width, 4 * width, 4 * width] + [8 * width] * 4
    assert critic.fc.in_features == 8 * width * 2 * 2 and critic(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    assert list(critic.state_dict()) == list(Critic(64).state_dict())
    with pytest.raises(ValueError, match='--critic_width'):
        Critic(64, 0)


def test_forward_is_deterministic():
    x = torch.rand(2, 3, 24, 24)
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        with torch.no_grad():
            outputs.append(MRCNet(**TINY)(x)[0])
    assert torch.equal(*outputs)


def test_parameter_counts_at_paper_defaults():
    counts = {name: sum(p.numel() for p in MODELS[name]().parameters()) for name in ('MRCNet', 'Restormer')}
    assert counts == {'MRCNet': 49_927_630, 'Restormer': 26_126_644}


def test_critic_rejects_patch_sizes_it_cannot_take():
    with pytest.raises(ValueError, match='multiple of 32.*--patch_size'):
        Critic(100)
    with pytest.raises(ValueError, match='built for 32x32'):
        Critic(32)(torch.rand(1, 3, 64, 64))


def test_official_state_dict_with_leftovers_loads_and_reports_them():
    fixture = load_fixture()
    config = fixture['mrcnet_config']
    model = MRCNet(dim=config['dim'], num_blocks=tuple(config['num_blocks']),
                   num_refinement_blocks=config['num_refinement_blocks'], heads=tuple(config['heads'])).double()
    state = filled_state(fixture['mrcnet_keys'])
    report = load_network_state(model, state)
    assert report.leftover and all(key not in model.state_dict() for key in report.leftover)
    assert 'res_patch_embed' in str(report)
    assert torch.equal(model.state_dict()['patch_embed.proj.weight'], state['patch_embed.proj.weight'])

    missing = {key: value for key, value in state.items() if not key.startswith('latent.')}
    with pytest.raises(CheckpointError, match='missing: latent'):
        load_network_state(model, missing)
    misshaped = dict(state, **{'output.weight': torch.zeros(3, 8, 3, 3, dtype=torch.float64)})
    with pytest.raises(CheckpointError, match='mis-shaped: output.weight'):
        load_network_state(model, misshaped)


def test_activation_checkpointing_changes_no_number():
    x = torch.rand(2, 3, 16, 16)
    results = []
    for enabled in (False, True):
        torch.manual_seed(0)
        model = MRCNet(**TINY)
        set_activation_checkpointing(model, enabled)
        restored, embedding = model(x)
        (restored.square().mean() + embedding.abs().mean()).backward()
        results.append((restored.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for plain, checkpointed in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(plain, checkpointed, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('layer_norm_type', ['WithBias', 'BiasFree'])
def test_channel_layer_norm_matches_the_official_formula(layer_norm_type):
    torch.manual_seed(0)
    norm = LayerNorm(6, layer_norm_type)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        if norm.body.bias is not None:
            norm.body.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64) * 3 + 1
    norm = norm.double()
    pixels = x.permute(0, 2, 3, 1)  # the official code normalises B x HW x C rows
    var = pixels.var(-1, keepdim=True, unbiased=False)
    if layer_norm_type == 'WithBias':
        expected = (pixels - pixels.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-5) * norm.body.weight + norm.body.bias
    else:
        expected = pixels / torch.sqrt(var + 1e-5) * norm.body.weight
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2), rtol=1e-12, atol=1e-12)


# Float64 round-off: every output below is a sum of at most a few hundred products (the attention sums over
# 8 x 8 pixels and the channels; a tiny map's deepest chain is a few dozen such layers), so a different
# summation order moves it by about 1e-14 relative; 1e-11 is a bound that no layout bug could meet.
FLOAT64_REORDER = dict(rtol=1e-11, atol=1e-11)


def assert_same_float64_gradients(got: torch.Tensor, want: torch.Tensor, inputs) -> None:
    """The gradients of a random weighting of `got` and of `want` with respect to `inputs` agree to float64
    round-off."""
    weights = torch.randn_like(got)
    for got_grad, want_grad in zip(torch.autograd.grad((got * weights).sum(), inputs),
                                   torch.autograd.grad((want * weights).sum(), inputs), strict=True):
        torch.testing.assert_close(got_grad, want_grad, **FLOAT64_REORDER)


@pytest.mark.parametrize('heads', [1, 2])
@pytest.mark.parametrize('channels_last', [False, True])
def test_attention_matches_the_official_formula(heads, channels_last):
    torch.manual_seed(0)
    attention = MDTA(8, heads, bias=True).double()
    with torch.no_grad():
        attention.temperature.uniform_(0.5, 2)
    x = torch.randn(2, 8, 8, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    # The official: q, k, v as B x heads x c x HW, normalised over the pixels, attention across channels.
    q, k, v = (t.reshape(2, heads, 8 // heads, 48) for t in attention.qkv_dwconv(attention.qkv(x)).chunk(3, 1))
    q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * attention.temperature).softmax(-1)
    expected = attention.project_out((attn @ v).reshape(2, 8, 8, 6))
    out = attention(x)
    torch.testing.assert_close(out, expected, **FLOAT64_REORDER)
    # The normalisation folded into the c x c products must give the official gradients too.
    assert_same_float64_gradients(out, expected, (x, *attention.parameters()))
    # NCHW in, NCHW out; for channels-last input the output convolution's own choice decides (torch 2.5's float64
    # convolution returns NCHW, later versions channels-last).
    assert out.is_contiguous() or channels_last


def test_the_attention_logits_match_f_normalize_where_the_eps_clamps_a_norm():
    # A channel of q whose norm over the pixels is below F.normalize's eps (1e-12): the norm is clamped to eps, so
    # no gradient flows through it (only the products' share remains).
    torch.manual_seed(0)
    q, k = (torch.randn(2, 12, 2, 3, dtype=torch.float64) for _ in range(2))
    q[:, :, 1, 0] *= 1e-14
    temperature = torch.rand(2, 1, 1, dtype=torch.float64) + 0.5
    inputs = [t.requires_grad_(True) for t in (q, k, temperature)]
    got = cosine_logits(q, k, temperature)
    unit_q, unit_k = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(k, dim=1)
    want = torch.einsum('bphi,bphj->bhij', unit_q, unit_k) * temperature
    torch.testing.assert_close(got, want, **FLOAT64_REORDER)
    assert_same_float64_gradients(got, want, inputs)
    with torch.no_grad():  # inference takes the plain operations: the same numbers
        assert torch.equal(cosine_logits(q, k, temperature), got)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels_last', [False, True])
def test_the_gdfn_gate_gives_autograds_gradient(dtype, channels_last):
    torch.manual_seed(0)
    y = torch.randn(2, 10, 7, 5, dtype=dtype)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    y.requires_grad_(True)
    weights = torch.randn(2, 5, 7, 5, dtype=dtype)
    y1, y2 = y.chunk(2, dim=1)
    expected = torch.nn.functional.gelu(y1) * y2
    out = gated_gelu(y)
    assert torch.equal(out, expected)  # the same operations on the same views
    got, = torch.autograd.grad((out * weights).sum(), y)
    want, = torch.autograd.grad((expected * weights).sum(), y)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # The backward runs autograd's own kernels (two products and gelu_backward) on the same values, writing into
    # the halves of one tensor; only a loop's vector/scalar split could differ, by an ulp or two of erf and exp.
    # 4 ulps, relative to the largest gradient (gelu' crosses zero, so a relative bound alone would not do).
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got, want, rtol=4 * eps, atol=4 * eps * want.abs().max().item())
    with torch.no_grad():  # without autograd, the plain operations
        assert torch.equal(gated_gelu(y), expected)


@pytest.mark.parametrize('name', ['MRCNet', 'Restormer', 'PromptIR'])
def test_the_cpu_channels_last_layout_changes_no_number(name, monkeypatch):
    x = torch.rand(2, 3, 20, 12, dtype=torch.float64)
    results = []
    for layout in ('channels_last', 'nchw'):
        if layout == 'nchw':
            for module in (net.mrcnet, net.restormer, net.promptir):
                monkeypatch.setattr(module, 'computing_layout', lambda t: t)
        torch.manual_seed(0)
        model = MODELS[name](**tiny(name)).double()
        restored, embedding = model(x)
        assert restored.is_contiguous() and embedding.is_contiguous()  # NCHW out, whatever the layout inside
        (restored.square().mean() + embedding.abs().mean()).backward()
        results.append([restored, embedding] + [p.grad for p in model.parameters()])
    for channels_last, nchw in zip(*results, strict=True):
        torch.testing.assert_close(channels_last, nchw, **FLOAT64_REORDER)


def test_flop_count_scales_with_the_image_area():
    from net.__main__ import forward_gflops

    with torch.device('meta'):
        model = MRCNet(**TINY)
    small, large = forward_gflops(model, 32, 32), forward_gflops(model, 64, 64)
    assert small > 0
    # Convolutions scale with the area; MDTA's channel attention is linear in it too.
    assert large == pytest.approx(4 * small, rel=0.01)
