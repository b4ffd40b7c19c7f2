"""Image-quality metrics as pure functions, with their conventions in the signature.

PSNR and SSIM are scikit-image's, computed on 8-bit RGB arrays (H x W x 3 uint8, exactly the pixels that
are saved), as the paper does: `peak_signal_noise_ratio(data_range=255)` and
`structural_similarity(channel_axis=2, data_range=255)`. `y_channel=True` switches to the Restormer/BasicSR
convention instead: the ITU-R BT.601 luma Y in [16, 235] (float, not rounded), and SSIM with BasicSR's
11 x 11 Gaussian window (sigma 1.5, population covariance).

LPIPS and FID need networks with pretrained weights. They come from packages (`lpips`, optional and not in
requirements.txt; `pytorch-fid`, which also computes the Fréchet distance), and are used only where the package
is installed *and* its weights are already on this machine: `load_lpips` and `load_fid` return an `Unavailable`
naming the reason otherwise, so that a report says why a number is missing instead of showing a random-backbone
value. Both metrics take their network as a plain callable, so tests use a stand-in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from data.image_io import to_tensor

# BT.601 RGB -> Y for 0-255 inputs, as BasicSR's `rgb2ycbcr(y_only=True)`: Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> H x W float64 luma Y in [16, 235] (BT.601, BasicSR's `to_y_channel`)."""
    return image.astype(np.float64) @ _Y_WEIGHTS + _Y_OFFSET


def _check_pair(restored: np.ndarray, target: np.ndarray) -> None:
    for label, image in (('restored', restored), ('target', target)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'metrics take H x W x 3 uint8 RGB arrays; {label} is {image.dtype} {image.shape}')
    if restored.shape != target.shape:
        raise ValueError(f'restored {restored.shape} and target {target.shape} differ in size')


def psnr(restored: np.ndarray, target: np.ndarray, *, data_range: int = 255, y_channel: bool = False) -> float:
    """PSNR in dB of two H x W x 3 uint8 RGB images, over RGB (default) or the Y channel."""
    _check_pair(restored, target)
    if y_channel:
        return float(peak_signal_noise_ratio(rgb_to_y(target), rgb_to_y(restored), data_range=data_range))
    # skimage returns inf for identical images; so does the definition.
    return float(peak_signal_noise_ratio(target, restored, data_range=data_range))


def ssim(restored: np.ndarray, target: np.ndarray, *, data_range: int = 255, y_channel: bool = False) -> float:
    """SSIM of two H x W x 3 uint8 RGB images: skimage's default 7 x 7 window over RGB channels, or on Y
    BasicSR's Gaussian 11 x 11 window (sigma 1.5, population covariance). Images need sides of 7 (RGB) or
    11 (Y) pixels at least."""
    _check_pair(restored, target)
    if y_channel:
        return float(structural_similarity(rgb_to_y(target), rgb_to_y(restored), data_range=data_range,
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    return float(structural_similarity(target, restored, data_range=data_range, channel_axis=2))


def brightness_offset(restored: np.ndarray, target: np.ndarray) -> float:
    """Mean of restored minus target over every pixel and channel of two H x W x 3 uint8 RGB images, in grey
    levels of 255: the global brightening (> 0) or darkening (< 0) that PSNR counts but does not show. A shift of
    d levels on an image whose error has RMS e costs 10 log10(1 + d^2 / (e^2 - d^2)) dB of PSNR."""
    _check_pair(restored, target)
    return float(np.mean(restored, dtype=np.float64) - np.mean(target, dtype=np.float64))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two N x D feature sets (the FID formula,
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as `pytorch-fid` computes it); D >= 2, since
    pytorch-fid 0.3.0 fails on 1 x 1 covariances with SciPy 1.17 (FID's features are 2048-D)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError('the Fréchet distance needs at least 2 feature vectors per set')
    if features_a.ndim != 2 or features_a.shape[1] < 2 or features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError('the Fréchet distance needs two N x D feature sets of one size D >= 2, got '
                         f'{features_a.shape} and {features_b.shape}')
    with warnings.catch_warnings():
        # pytorch-fid 0.3.0, its latest release, still passes sqrtm's `disp`, deprecated in SciPy 1.17
        warnings.filterwarnings('ignore', 'The `disp` argument is deprecated', DeprecationWarning)
        return float(calculate_frechet_distance(features_a.mean(0), np.cov(features_a, rowvar=False),
                                                features_b.mean(0), np.cov(features_b, rowvar=False)))


@dataclass(frozen=True)
class Unavailable:
    """A metric that is not computed, and why (shown in reports instead of a number)."""

    reason: str


LPIPS_INPUTS = {False: '[-1, 1] (the lpips package\'s convention)',
                True: '[0, 1] without normalize=True (the official evaluate.py)'}


@dataclass(frozen=True)
class LPIPS:
    """LPIPS distance; `network` maps two B x 3 x H x W tensors to B distances. The package expects inputs in
    [-1, 1]; `official` feeds [0, 1] instead, as the official `evaluate.py` does (its numbers differ)."""

    network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device = torch.device('cpu')
    official: bool = False

    @property
    def inputs(self) -> str:
        """The input range this LPIPS feeds the network, for reports."""
        return LPIPS_INPUTS[self.official]

    def __call__(self, restored: np.ndarray, target: np.ndarray) -> float:
        """LPIPS of two H x W x 3 uint8 RGB images (lower is better)."""
        _check_pair(restored, target)
        with torch.no_grad():
            return float(self.network(self._tensor(restored), self._tensor(target)).mean())

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        unit = to_tensor(image)[None].to(self.device)
        return unit if self.official else unit * 2 - 1


@dataclass(frozen=True)
class FID:
    """FID between two image sets; `features` maps a B x 3 x H x W tensor in [0, 1] to B x D features."""

    features: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device = torch.device('cpu')

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The feature vector (D,) of one H x W x 3 uint8 RGB image."""
        with torch.no_grad():
            return self.features(to_tensor(image)[None].to(self.device)).reshape(-1).double().cpu().numpy()

    @staticmethod
    def distance(restored_features: list[np.ndarray], target_features: list[np.ndarray]) -> float:
        return frechet_distance(np.stack(restored_features), np.stack(target_features))


def _hub_file(filename: str) -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints' / filename


def load_lpips(device: torch.device, official: bool = False) -> LPIPS | Unavailable:
    """LPIPS (AlexNet) from the `lpips` package, if it and the AlexNet weights are on this machine; `official`:
    fed [0, 1] images as the official evaluation does."""
    try:
        import lpips as lpips_package
    except ImportError:
        return Unavailable('the optional package `lpips` is not installed (pip install lpips; it is not in '
                           'requirements.txt)')
    from torchvision.models import AlexNet_Weights

    backbone = _hub_file(Path(AlexNet_Weights.IMAGENET1K_V1.url).name)
    if not backbone.is_file():
        return Unavailable(f'the AlexNet weights LPIPS needs are not at {backbone}; download them once with '
                           'network access (torchvision.models.alexnet(weights="IMAGENET1K_V1"))')
    network = lpips_package.LPIPS(net='alex', verbose=False).to(device).eval()
    return LPIPS(network, device, official)


def load_fid(device: torch.device) -> FID | Unavailable:
    """FID features (Inception-v3 pool3, 2048-D) from `pytorch-fid`, if it and its weights are here."""
    try:
        from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3
    except ImportError:
        return Unavailable('the package `pytorch-fid` is not installed (pip install -r requirements.txt)')
    weights = _hub_file(Path(FID_WEIGHTS_URL).name)
    if not weights.is_file():
        return Unavailable(f'the FID Inception weights are not at {weights}; download them once with network '
                           f'access from {FID_WEIGHTS_URL}')
    network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    return FID(lambda batch: network(batch)[0].flatten(1), device)
