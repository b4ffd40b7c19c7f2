"""The demo's synthetic degradations, as pure, seeded functions on uint8 H x W x 3 RGB arrays.

They imitate each task physically for the built-in demo set (`data.demo`): rain streaks, haze by atmospheric
scattering, motion blur along random camera paths (centred, so that it does not translate the image), and dim
exposure with sensor noise; their default strengths give the demo test set the real benchmarks' mean input PSNR
(`data.demo.PSNR_TARGETS`). Every function takes its randomness from an explicit `numpy.random.Generator` and
returns a new array. Noise, the one degradation made on the fly for real data, is `data.noise`.
"""

import cv2
import numpy as np
from scipy import ndimage


def _quantise(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _line_kernel(length: int, angle_deg: float, width: float) -> np.ndarray:
    """An anti-aliased straight streak of `length` pixels at `angle_deg` from vertical, blurred to `width`,
    with peak 1 (a drop spread along it keeps its brightness at the streak's core)."""
    size = length + 2 if length % 2 else length + 3
    kernel = np.zeros((size, size), np.float32)
    centre = (size - 1) / 2
    dx = np.sin(np.deg2rad(angle_deg)) * (length - 1) / 2
    dy = np.cos(np.deg2rad(angle_deg)) * (length - 1) / 2
    scale = 16  # sub-pixel precision of cv2.line (4 fractional bits)
    start = (round((centre - dx) * scale), round((centre - dy) * scale))
    end = (round((centre + dx) * scale), round((centre + dy) * scale))
    cv2.line(kernel, start, end, 1.0, 1, cv2.LINE_AA, shift=4)
    kernel = cv2.GaussianBlur(kernel, (0, 0), width)
    return kernel / kernel.max()


def _rain_layer(shape: tuple[int, int], rng: np.random.Generator, density: float, length: int,
                angle_deg: float, brightness: float) -> np.ndarray:
    """One layer of rain streaks in [0, 1]: sparse random drops smeared along a line (motion blur)."""
    drops = (rng.random(shape) < density) * rng.uniform(0.5, 1.0, shape)
    kernel = _line_kernel(length, angle_deg, width=rng.uniform(0.4, 0.9))
    streaks = cv2.filter2D(drops.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(streaks * brightness, 0, 1)


def add_rain(clean: np.ndarray, rng: np.random.Generator, layers: tuple[int, int] = (3, 4),
             density: tuple[float, float] = (0.0007, 0.0013), length: tuple[int, int] = (8, 30),
             brightness: tuple[float, float] = (0.25, 0.4)) -> np.ndarray:
    """Rain: several streak layers of one wind direction (each layer its own length, density, brightness),
    screen-blended onto the image: I = 1 - (1 - J)(1 - R)."""
    h, w = clean.shape[:2]
    wind = rng.uniform(-25, 25)
    rain = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(layers[0], layers[1] + 1)):
        layer = _rain_layer((h, w), rng, rng.uniform(*density), int(rng.integers(length[0], length[1] + 1)),
                            wind + rng.uniform(-5, 5), rng.uniform(*brightness))
        rain = 1 - (1 - rain) * (1 - layer)
    image = clean.astype(np.float32) / 255
    return _quantise(1 - (1 - image) * (1 - rain[..., None]))


def depth_from_disparity(disparity: np.ndarray) -> np.ndarray:
    """Relative depth in [0, 1] (0 nearest) from a stereo disparity map; unknown (non-finite or non-positive)
    disparities take the nearest known value."""
    known = np.isfinite(disparity) & (disparity > 0)
    if not known.any():
        raise ValueError('depth_from_disparity: the disparity map holds no finite positive value')
    nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    depth = 1.0 / disparity[tuple(nearest)]
    return ((depth - depth.min()) / max(depth.max() - depth.min(), 1e-12)).astype(np.float32)


def random_depth(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random depth map in [0, 1] for photographs without one: farther towards the top (as in most
    outdoor scenes), plus a low-frequency random field."""
    h, w = shape
    field = cv2.resize(rng.random((4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]
    depth = 0.6 * ramp + 0.4 * field
    return (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-12)


def add_haze(clean: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """Haze by the atmospheric scattering model: I = J t + A (1 - t), with transmission t = exp(-beta depth)."""
    if depth.shape != clean.shape[:2]:
        raise ValueError(f'add_haze: depth map {depth.shape} does not match the image {clean.shape[:2]}')
    t = np.exp(-beta * depth)[..., None]
    return _quantise(clean.astype(np.float32) / 255 * t + airlight * (1 - t))


def motion_kernel(size: int, rng: np.random.Generator, steps: int = 64) -> np.ndarray:
    """A normalised motion-blur kernel: the path of a random walk with inertia (a shaking camera), scaled to span
    `size - 2` pixels along its longer side and rasterised with bilinear weights.

    The kernel is odd-sized, just large enough for the path, with the path's centre of mass on its centre pixel:
    filtering with it (`cv2.filter2D` anchors a kernel at its centre) blurs the image without also translating
    it, so a blurred image stays aligned with its sharp target, as a real benchmark's frame average is with the
    middle frame of a smooth motion. (A path centred on its bounding box in a `size` x `size` kernel would shift
    the image by up to a pixel, which no blind restorer can undo.)
    """
    velocity = rng.standard_normal(2)
    points = np.zeros((steps, 2))
    for i in range(1, steps):
        velocity = 0.85 * velocity + 0.5 * rng.standard_normal(2)
        points[i] = points[i - 1] + velocity
    points -= (points.max(0) + points.min(0)) / 2
    points *= (size - 2) / 2 / max(np.abs(points).max(), 1e-12)
    points -= points.mean(0)  # bilinear weights keep each point's position, so the kernel's centroid is this mean
    half = int(np.ceil(np.abs(points).max())) + 1  # room for the bilinear spread on either side
    points += half
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float64)
    base = np.floor(points).astype(int)
    frac = points - base
    for (x0, y0), (fx, fy) in zip(base, frac, strict=True):
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return (kernel / kernel.sum()).astype(np.float32)


def add_motion_blur(clean: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = (6, 10),
                    noise_sigma: tuple[float, float] = (1.0, 2.0)) -> np.ndarray:
    """Motion blur by a random `motion_kernel`, plus mild Gaussian noise (sensor noise of the short exposure)."""
    kernel = motion_kernel(int(rng.integers(size[0], size[1] + 1)), rng)
    blurred = cv2.filter2D(clean.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    noisy = blurred + rng.standard_normal(blurred.shape) * rng.uniform(*noise_sigma)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def darken(clean: np.ndarray, rng: np.random.Generator, exposure: tuple[float, float] = (0.25, 0.55),
           gamma: tuple[float, float] = (1.2, 1.6), peak: tuple[float, float] = (40.0, 200.0),
           read_noise: tuple[float, float] = (0.002, 0.01)) -> np.ndarray:
    """Low light: scaled exposure and a gamma curve, then Poisson (shot) noise at `peak` photons for full
    white plus Gaussian read noise, quantised to 8 bits."""
    image = clean.astype(np.float64) / 255
    dim = (rng.uniform(*exposure) * image) ** rng.uniform(*gamma)
    photons = rng.uniform(*peak)
    shot = rng.poisson(dim * photons) / photons
    return _quantise(shot + rng.standard_normal(image.shape) * rng.uniform(*read_noise))
