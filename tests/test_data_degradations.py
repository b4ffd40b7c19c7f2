"""`data.degradations`: hand-computed values, the test-noise protocol, and purity (seeded, inputs untouched)."""

import math

import numpy as np
import pytest

from data import degradations as deg

CLEAN = np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8)


class FixedNormals:
    """A stand-in generator whose 'random' normals are given."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float64)

    def standard_normal(self, shape):
        return self.values.reshape(shape)


def test_gaussian_noise_clips_then_truncates_like_the_official_code():
    clean = np.array([10, 250, 0, 100, 100], np.uint8)
    noisy = deg.add_gaussian_noise(clean, 10, FixedNormals([0.5, 1.0, -1.0, 0.99, -0.01]))
    assert noisy.dtype == np.uint8
    assert noisy.tolist() == [15, 255, 0, 109, 99]  # 109.9 -> 109 and 99.9 -> 99: truncated, not rounded


def test_test_noise_is_the_seed_1850_protocol():
    expected = np.clip(CLEAN + np.random.RandomState(1850).randn(*CLEAN.shape) * 25, 0, 255).astype(np.uint8)
    assert deg.TEST_NOISE_SEED == 1850
    assert np.array_equal(deg.test_noise(CLEAN, 25), expected)
    assert np.array_equal(deg.test_noise(CLEAN, 25), expected)  # the same noise whatever ran before
    assert not np.array_equal(deg.test_noise(CLEAN, 25, seed=1), expected)
    error = deg.test_noise(CLEAN, 50).astype(float) - CLEAN
    assert 40 < error.std() < 50  # clipped sigma-50 noise


def test_haze_follows_the_atmospheric_scattering_model():
    clean = np.full((2, 3, 3), 100, np.uint8)
    assert np.array_equal(deg.add_haze(clean, np.zeros((2, 3), np.float32), beta=2.0, airlight=0.9), clean)
    # t = exp(-ln2 * 1) = 0.5: I = 0.5 * 100 + 0.5 * 0.8 * 255 = 152
    assert (deg.add_haze(clean, np.ones((2, 3), np.float32), beta=math.log(2), airlight=0.8) == 152).all()
    assert (deg.add_haze(clean, np.ones((2, 3), np.float32), beta=50.0, airlight=0.8) == 204).all()
    with pytest.raises(ValueError, match='depth map'):
        deg.add_haze(clean, np.zeros((3, 2), np.float32), 1.0, 0.9)


def test_depth_from_disparity_fills_unknown_values_and_normalises():
    depth = deg.depth_from_disparity(np.array([[1.0, 2.0, np.inf, 0.0]], np.float32))
    assert depth.tolist() == [[1.0, 0.0, 0.0, 0.0]]  # depth 1/d = 1, 0.5, then the nearest known (0.5)
    with pytest.raises(ValueError, match='no finite positive value'):
        deg.depth_from_disparity(np.full((2, 2), np.inf))


def test_random_depth_is_smooth_in_unit_range_and_seeded():
    depth = deg.random_depth((40, 30), np.random.default_rng(0))
    assert depth.shape == (40, 30) and depth.min() == 0 and depth.max() == pytest.approx(1)
    assert np.abs(np.diff(depth, axis=0)).max() < 0.2
    assert np.array_equal(depth, deg.random_depth((40, 30), np.random.default_rng(0)))


def test_motion_kernel_is_a_normalised_path():
    kernel = deg.motion_kernel(11, np.random.default_rng(0))
    assert kernel.shape == (11, 11) and kernel.min() >= 0 and kernel.sum() == pytest.approx(1, abs=1e-5)
    assert (kernel > 1e-3).sum() > 5  # spread along a path, not a single dot
    assert np.array_equal(kernel, deg.motion_kernel(11, np.random.default_rng(0)))


def test_motion_blur_keeps_flat_regions_and_softens_edges():
    flat = np.full((24, 24, 3), 120, np.uint8)
    assert np.abs(deg.add_motion_blur(flat, np.random.default_rng(0)).astype(int) - 120).max() <= 10
    edge = np.zeros((24, 24, 3), np.uint8)
    edge[:, 12:] = 255
    blurred = deg.add_motion_blur(edge, np.random.default_rng(1), size=(9, 9))
    assert np.abs(np.diff(blurred[12].astype(int), axis=0)).max() < 200


def test_rain_only_brightens_and_darken_only_darkens():
    rainy = deg.add_rain(CLEAN, np.random.default_rng(0), density=(0.01, 0.01))
    assert (rainy >= CLEAN).all() and (rainy > CLEAN).mean() > 0.05
    dark = deg.darken(CLEAN, np.random.default_rng(0))
    assert dark.mean() < CLEAN.mean() / 2


@pytest.mark.parametrize('degrade', [
    lambda x, rng: deg.add_gaussian_noise(x, 25, rng),
    deg.add_rain,
    deg.add_motion_blur,
    deg.darken,
])
def test_degradations_are_pure_and_seeded(degrade):
    before = CLEAN.copy()
    first = degrade(CLEAN, np.random.default_rng(7))
    assert np.array_equal(CLEAN, before)
    assert first.dtype == np.uint8 and first.shape == CLEAN.shape
    assert np.array_equal(first, degrade(CLEAN, np.random.default_rng(7)))
    assert not np.array_equal(first, degrade(CLEAN, np.random.default_rng(8)))
