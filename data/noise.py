"""Gaussian noise, the one degradation made on the fly for real data: `add_gaussian_noise` during training, and
the two test-time protocols of `data.test_sets`: `test_noise` (the `pad` protocol: each image's noise seeded
afresh, so it is the same whatever subset or order evaluates it) and `OfficialNoise` (the official tester's one
seed-1850 stream across the images in sorted order). Values are on uint8 H x W x 3 RGB arrays; randomness comes
from an explicit generator or seed.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.image_io import read_rgb

TEST_NOISE_SEED = 1850


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator | np.random.RandomState
                       ) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation `sigma` (0-255 scale), clipped and quantised.

    Clipped to [0, 255] and then *truncated* to uint8 by the cast, exactly as the official code does
    (`np.clip(clean + noise * sigma, 0, 255).astype(np.uint8)`), so that PSNR figures compare with the
    paper's; rounding instead would shift every pixel by half a grey level on average.
    """
    noise = rng.standard_normal(clean.shape)
    return np.clip(clean.astype(np.float64) + noise * sigma, 0, 255).astype(np.uint8)


def test_noise(clean: np.ndarray, sigma: float, seed: int = TEST_NOISE_SEED) -> np.ndarray:
    """The test-time noise protocol: `add_gaussian_noise` with a generator seeded afresh for every image.

    The noise equals `np.random.seed(seed); np.random.randn(*clean.shape) * sigma`, so each image's noisy
    version is fixed whatever order, subset or process evaluates it.
    """
    return add_gaussian_noise(clean, sigma, np.random.RandomState(seed))


test_noise.__test__ = False  # a library function, not a pytest test, where a test module imports it by name



class OfficialNoise:
    """The official denoise tester's noise: one `np.random.seed(1850)` stream drawn image after image, in the
    order of `clean_paths`; `noise(index)` gives image `index`'s noisy version whatever order it is asked in
    (the stream's state before each image is kept once reached, so a resumed run draws the same noise)."""

    def __init__(self, clean_paths: Sequence[Path], sigma: float, seed: int = TEST_NOISE_SEED) -> None:
        self.clean_paths, self.sigma = tuple(clean_paths), sigma
        self._states = {0: np.random.RandomState(seed).get_state()}  # index -> the stream before that image

    def noisy(self, index: int, clean: np.ndarray) -> np.ndarray:
        """`np.clip(clean + sigma * randn(H, W, 3), 0, 255).astype(uint8)` for image `index` of the stream."""
        reached = max(known for known in self._states if known <= index)
        stream = np.random.RandomState()
        stream.set_state(self._states[reached])
        for earlier in range(reached, index):  # draw the noise of the images before it
            stream.standard_normal(read_rgb(self.clean_paths[earlier]).shape)
            self._states[earlier + 1] = stream.get_state()
        noisy = add_gaussian_noise(clean, self.sigma, stream)
        self._states[index + 1] = stream.get_state()
        return noisy
