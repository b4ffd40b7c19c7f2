"""Metrics against hand-computed values and against a second implementation of the conventions they claim;
LPIPS and FID through stand-in networks, and their loaders with and without the optional packages."""

import math
import sys
import types

import cv2
import numpy as np
import pytest
import torch

from data.image_io import to_uint8
from utils import metrics
from utils.metrics import FID, LPIPS, Unavailable, brightness_offset, frechet_distance, psnr, rgb_to_y, ssim


def constant(value: int, shape=(16, 16, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def test_psnr_by_hand():
    # MSE 100 on a 0-255 scale: 10 log10(255^2 / 100)
    assert psnr(constant(10), constant(0)) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    # On Y a grey step of 10 is 10 * (65.481 + 128.553 + 24.966) / 255 = 8.588 luma levels.
    step = 10 * 219 / 255
    assert psnr(constant(10), constant(0), y_channel=True) == pytest.approx(20 * math.log10(255 / step))


def test_rgb_to_y_spans_the_studio_range():
    assert rgb_to_y(constant(0))[0, 0] == pytest.approx(16)
    assert rgb_to_y(constant(255))[0, 0] == pytest.approx(235)
    assert rgb_to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16 + 65.481)


def test_ssim_rgb_is_the_channel_mean_of_skimage():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    restored = np.clip(target + rng.normal(0, 20, target.shape), 0, 255).astype(np.uint8)
    per_channel = [structural_similarity(target[..., c], restored[..., c], data_range=255) for c in range(3)]
    assert ssim(restored, target) == pytest.approx(np.mean(per_channel), rel=1e-12)
    assert ssim(target, target) == pytest.approx(1.0)


def _ssim_basicsr_convention(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as BasicSR computes it on Y: 11x11 Gaussian (sigma 1.5), valid region, population statistics."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = kernel @ kernel.T

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_ssim_y_follows_the_basicsr_convention():
    rng = np.random.default_rng(1)
    target = cv2.GaussianBlur(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8), (5, 5), 2)
    restored = np.clip(target + rng.normal(0, 12, target.shape), 0, 255).astype(np.uint8)
    expected = _ssim_basicsr_convention(rgb_to_y(target), rgb_to_y(restored))
    assert ssim(restored, target, y_channel=True) == pytest.approx(expected, rel=1e-9)


def test_to_uint8_rounds_and_clips_like_the_saved_image():
    values = torch.tensor([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 100 / 255, 1.0, 1.7]).reshape(1, 1, 7).expand(3, 1, 7)
    assert to_uint8(values)[0, :, 0].tolist() == [0, 0, 0, 1, 100, 255, 255]
    assert to_uint8(values).shape == (1, 7, 3)


def test_to_uint8_is_what_torchvision_save_image_writes(tmp_path):
    """The official testers save with `torchvision.utils.save_image` and score the file: halves round up there
    (x 255 + 0.5, truncated), where rounding to even would not."""
    from torchvision.utils import save_image

    halves = (torch.arange(256, dtype=torch.float32) + 0.5) / 255  # k + 0.5 grey levels, as close as float32 gets
    image = torch.cat([halves, torch.rand(256 * 7, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1])
    image = image.reshape(1, 32, 64).expand(3, 32, 64).contiguous()
    save_image(image, tmp_path / 'saved.png')
    saved = cv2.cvtColor(cv2.imread(str(tmp_path / 'saved.png')), cv2.COLOR_BGR2RGB)
    assert np.array_equal(to_uint8(image), saved)


@pytest.mark.parametrize('shift', [-3, 2])
def test_brightness_offset_and_the_psnr_it_costs(shift):
    rng = np.random.default_rng(shift + 10)
    target = rng.integers(20, 236, (16, 24, 3), dtype=np.uint8)
    error = rng.integers(-9, 10, target.shape)
    error -= int(round(error.mean()))  # zero-mean to within half a level
    restored = (target + error + shift).astype(np.uint8)
    offset = brightness_offset(restored, target)
    assert offset == pytest.approx(shift + error.mean(), abs=1e-12)
    # Removing the shift recovers the PSNR of the zero-mean rest, as the docstring's formula says.
    rest = (restored.astype(np.float64) - offset) - target
    mse = np.mean((restored.astype(np.float64) - target) ** 2)
    assert 10 * np.log10(255 ** 2 / np.mean(rest ** 2)) - psnr(restored, target) == pytest.approx(
        10 * np.log10(1 + offset ** 2 / (mse - offset ** 2)), rel=1e-9)
    with pytest.raises(ValueError, match='uint8'):
        brightness_offset(restored.astype(np.float32), target)


def test_metrics_refuse_mismatched_or_float_images():
    with pytest.raises(ValueError, match='differ in size'):
        psnr(constant(0, (8, 8, 3)), constant(0, (8, 9, 3)))
    with pytest.raises(ValueError, match='uint8'):
        ssim(constant(0).astype(np.float32), constant(0))


def test_frechet_distance_by_hand():
    # Sample covariances diag(4/3, 4/3) and diag(12, 4/3) commute, so the distance is the sum of the 1-D ones,
    # (mu_a - mu_b)^2 + var_a + var_b - 2 sqrt(var_a var_b): (9 + 4/3 + 12 - 2 * 4) + (25 + 0).
    a = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    assert frechet_distance(a, a * [3, 1] + [3, 5]) == pytest.approx(34 + 16 / 3, rel=1e-12)
    with pytest.raises(ValueError, match='at least 2'):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match='one size D >= 2'):
        frechet_distance(a, a[:, :1])
    with pytest.raises(ValueError, match='one size D >= 2'):
        frechet_distance(a[:, :1], a[:, :1])


@pytest.mark.parametrize('seed, size', [(0, 3), (1, 6)])
def test_frechet_distance_against_a_symmetric_square_root(seed, size):
    """Tr (S_a S_b)^(1/2) = Tr (A S_b A)^(1/2) with A = S_a^(1/2): the second is a symmetric eigenproblem, solved
    without scipy.linalg.sqrtm."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(50, size)) @ rng.normal(size=(size, size))
    b = rng.normal(size=(40, size)) * rng.uniform(0.5, 2, size) + rng.normal(size=size)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = vectors * np.sqrt(values) @ vectors.T
    trace_root = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a)).sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    # Both square roots are backward stable: each trace is off by about size * eps * cond * (its magnitude),
    # cond the condition number of S_a S_b; 100x that covers the sums and the cancellation in the formula.
    scale = np.trace(cov_a) + np.trace(cov_b)
    bound = 100 * size * np.finfo(np.float64).eps * np.linalg.cond(cov_a @ cov_b) * scale
    assert abs(frechet_distance(a, b) - expected) <= bound
    assert bound < 1e-9 * scale  # a bound that could catch a wrong formula


@pytest.mark.parametrize('seed', [0, 1])
def test_frechet_distance_of_a_set_to_itself_is_zero_with_singular_covariances(seed):
    x = np.random.default_rng(seed).normal(size=(5, 16))  # fewer samples than dimensions: rank 4 covariances
    # The 12 null eigenvalues of S S come out as rounding errors e ~ 16 * eps * |S|^2, and their square roots,
    # sqrt(e) = 4 * sqrt(eps) * |S| each, are what is left of the trace.
    bound = 12 * 4 * np.sqrt(np.finfo(np.float64).eps) * np.linalg.norm(np.cov(x, rowvar=False), 2)
    assert frechet_distance(x, x) == pytest.approx(0, abs=bound)


def test_lpips_and_fid_with_stand_in_networks():
    lpips = LPIPS(lambda x, y: (x - y).abs().mean(dim=(1, 2, 3)))
    assert lpips(constant(255), constant(0)) == pytest.approx(2.0)  # [-1, 1] inputs
    fid = FID(lambda batch: batch.mean(dim=(2, 3)))
    features = fid.embed(constant(51))
    np.testing.assert_allclose(features, [0.2, 0.2, 0.2], rtol=1e-6)
    assert FID.distance([features, features + 1], [features, features + 1]) == pytest.approx(0, abs=1e-4)


def test_lpips_official_mode_feeds_unit_range_images():
    def network(x, y):
        return (x - y).abs().mean(dim=(1, 2, 3))

    package, official = LPIPS(network), LPIPS(network, official=True)
    assert package(constant(255), constant(0)) == pytest.approx(2.0)  # [-1, 1]
    assert official(constant(255), constant(0)) == pytest.approx(1.0)  # [0, 1], as the official evaluate.py
    assert package.inputs.startswith('[-1, 1]') and official.inputs.startswith('[0, 1]')


def test_loaders_report_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, 'lpips', None)  # import lpips -> ImportError
    monkeypatch.setitem(sys.modules, 'pytorch_fid', None)
    monkeypatch.setitem(sys.modules, 'pytorch_fid.inception', None)
    lpips, fid = metrics.load_lpips(torch.device('cpu')), metrics.load_fid(torch.device('cpu'))
    assert isinstance(lpips, Unavailable) and 'pip install lpips' in lpips.reason
    assert isinstance(fid, Unavailable) and '`pytorch-fid`' in fid.reason and 'requirements.txt' in fid.reason
    assert 'not in requirements.txt' in lpips.reason


def _fake_packages(monkeypatch):
    """Installed-looking `lpips` and `pytorch_fid` whose networks are stand-ins."""
    lpips_package = types.ModuleType('lpips')

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            assert net == 'alex'

        def forward(self, x, y):
            return (x - y).abs().mean(dim=(1, 2, 3))

    lpips_package.LPIPS = FakeLPIPS
    inception = types.ModuleType('pytorch_fid.inception')
    inception.FID_WEIGHTS_URL = 'https://example.invalid/pt_inception-2015-12-05-6726825d.pth'

    class FakeInception(torch.nn.Module):
        BLOCK_INDEX_BY_DIM = {2048: 3}

        def __init__(self, blocks):
            super().__init__()

        def forward(self, batch):
            return [batch.mean(dim=(2, 3), keepdim=True)]

    inception.InceptionV3 = FakeInception
    package = types.ModuleType('pytorch_fid')
    package.inception = inception
    monkeypatch.setitem(sys.modules, 'lpips', lpips_package)
    monkeypatch.setitem(sys.modules, 'pytorch_fid', package)
    monkeypatch.setitem(sys.modules, 'pytorch_fid.inception', inception)


def test_loaders_need_the_weights_on_this_machine(monkeypatch, tmp_path):
    _fake_packages(monkeypatch)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    lpips, fid = metrics.load_lpips(torch.device('cpu')), metrics.load_fid(torch.device('cpu'))
    assert isinstance(lpips, Unavailable) and str(tmp_path / 'checkpoints' / 'alexnet-owt-7be5be79.pth') in lpips.reason
    assert isinstance(fid, Unavailable) and 'pt_inception-2015-12-05-6726825d.pth' in fid.reason

    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'alexnet-owt-7be5be79.pth').touch()
    (tmp_path / 'checkpoints' / 'pt_inception-2015-12-05-6726825d.pth').touch()
    lpips, fid = metrics.load_lpips(torch.device('cpu')), metrics.load_fid(torch.device('cpu'))
    assert isinstance(lpips, LPIPS) and lpips(constant(255), constant(0)) == pytest.approx(2.0)
    assert isinstance(fid, FID) and fid.embed(constant(0)).shape == (3,)
