"""`data.noise`: clipping and truncation as the official code, the seed-1850 test protocol, purity."""

import numpy as np

from data import noise

CLEAN = np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8)


class FixedNormals:
    """A stand-in generator whose 'random' normals are given."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float64)

    def standard_normal(self, shape):
        return self.values.reshape(shape)


def test_gaussian_noise_clips_then_truncates_like_the_official_code():
    clean = np.array([10, 250, 0, 100, 100], np.uint8)
    noisy = noise.add_gaussian_noise(clean, 10, FixedNormals([0.5, 1.0, -1.0, 0.99, -0.01]))
    assert noisy.dtype == np.uint8
    assert noisy.tolist() == [15, 255, 0, 109, 99]  # 109.9 -> 109 and 99.9 -> 99: truncated, not rounded


def test_test_noise_is_the_seed_1850_protocol():
    expected = np.clip(CLEAN + np.random.RandomState(1850).randn(*CLEAN.shape) * 25, 0, 255).astype(np.uint8)
    assert np.array_equal(noise.test_noise(CLEAN, 25), expected)
    assert np.array_equal(noise.test_noise(CLEAN, 25), expected)  # the same noise whatever ran before
    assert not np.array_equal(noise.test_noise(CLEAN, 25, seed=1), expected)
    error = noise.test_noise(CLEAN, 50).astype(float) - CLEAN
    assert 40 < error.std() < 50  # clipped sigma-50 noise


def test_noise_is_pure_and_seeded():
    before = CLEAN.copy()
    first = noise.add_gaussian_noise(CLEAN, 25, np.random.default_rng(7))
    assert np.array_equal(CLEAN, before)
    assert first.dtype == np.uint8 and first.shape == CLEAN.shape
    assert np.array_equal(first, noise.add_gaussian_noise(CLEAN, 25, np.random.default_rng(7)))
    assert not np.array_equal(first, noise.add_gaussian_noise(CLEAN, 25, np.random.default_rng(8)))
