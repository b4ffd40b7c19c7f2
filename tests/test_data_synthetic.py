"""`data.synthetic`: the demo's degradations: hand-computed values, physical sense, purity (seeded, inputs
untouched)."""

import math

import cv2
import numpy as np
import pytest

from data import synthetic

CLEAN = np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8)


def test_haze_follows_the_atmospheric_scattering_model():
    clean = np.full((2, 3, 3), 100, np.uint8)
    assert np.array_equal(synthetic.add_haze(clean, np.zeros((2, 3), np.float32), beta=2.0, airlight=0.9), clean)
    # t = exp(-ln2 * 1) = 0.5: I = 0.5 * 100 + 0.5 * 0.8 * 255 = 152
    assert (synthetic.add_haze(clean, np.ones((2, 3), np.float32), beta=math.log(2), airlight=0.8) == 152).all()
    assert (synthetic.add_haze(clean, np.ones((2, 3), np.float32), beta=50.0, airlight=0.8) == 204).all()
    with pytest.raises(ValueError, match='depth map'):
        synthetic.add_haze(clean, np.zeros((3, 2), np.float32), 1.0, 0.9)


def test_depth_from_disparity_fills_unknown_values_and_normalises():
    depth = synthetic.depth_from_disparity(np.array([[1.0, 2.0, np.inf, 0.0]], np.float32))
    assert depth.tolist() == [[1.0, 0.0, 0.0, 0.0]]  # depth 1/d = 1, 0.5, then the nearest known (0.5)
    with pytest.raises(ValueError, match='no finite positive value'):
        synthetic.depth_from_disparity(np.full((2, 2), np.inf))


def test_random_depth_is_smooth_in_unit_range_and_seeded():
    depth = synthetic.random_depth((40, 30), np.random.default_rng(0))
    assert depth.shape == (40, 30) and depth.min() == 0 and depth.max() == pytest.approx(1)
    assert np.abs(np.diff(depth, axis=0)).max() < 0.2
    assert np.array_equal(depth, synthetic.random_depth((40, 30), np.random.default_rng(0)))


def test_motion_kernel_is_a_normalised_path():
    kernel = synthetic.motion_kernel(11, np.random.default_rng(0))
    rows, cols = np.nonzero(kernel)
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1, abs=1e-5)
    # The path spans 9 pixels along its longer side; bilinear weights reach one pixel beyond its end.
    assert max(np.ptp(rows), np.ptp(cols)) in (9, 10)
    assert (kernel > 1e-3).sum() > 5  # spread along a path, not a single dot
    assert np.array_equal(kernel, synthetic.motion_kernel(11, np.random.default_rng(0)))


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('size', [6, 7, 10])
def test_motion_blur_does_not_translate_the_image(seed, size):
    """The blurred image's centre of mass stays where the sharp one's is (a bounding-box-centred path, or an
    even-sized kernel under cv2's centre anchor, moved it by up to a pixel)."""
    y, x = np.mgrid[:64, :64]
    blob = 200 * np.exp(-((y - 30.3) ** 2 + (x - 33.7) ** 2) / (2 * 3.0 ** 2))  # nothing of it reaches the border
    kernel = synthetic.motion_kernel(size, np.random.default_rng(seed))
    blurred = cv2.filter2D(blob.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT).astype(np.float64)

    def centre(image):
        return np.array([(image * y).sum(), (image * x).sum()]) / image.sum()

    # float32 filtering: each value sums at most 19 x 19 products, so its relative error is below 361 x 2^-24
    # (2e-5); the centroid of a 64-pixel image then moves by less than 2e-5 x 64 px (1.4e-3 px).
    assert np.abs(centre(blurred) - centre(blob)).max() < 1.4e-3


def test_motion_blur_keeps_flat_regions_and_softens_edges():
    flat = np.full((24, 24, 3), 120, np.uint8)
    assert np.abs(synthetic.add_motion_blur(flat, np.random.default_rng(0)).astype(int) - 120).max() <= 10
    edge = np.zeros((24, 24, 3), np.uint8)
    edge[:, 12:] = 255
    blurred = synthetic.add_motion_blur(edge, np.random.default_rng(1), size=(9, 9))
    assert np.abs(np.diff(blurred[12].astype(int), axis=0)).max() < 200


def test_rain_only_brightens_and_darken_only_darkens():
    rainy = synthetic.add_rain(CLEAN, np.random.default_rng(0), density=(0.01, 0.01))
    assert (rainy >= CLEAN).all() and (rainy > CLEAN).mean() > 0.05
    dark = synthetic.darken(CLEAN, np.random.default_rng(0))
    assert dark.mean() < CLEAN.mean() / 2


@pytest.mark.parametrize('degrade', [
    synthetic.add_rain,
    synthetic.add_motion_blur,
    synthetic.darken,
])
def test_degradations_are_pure_and_seeded(degrade):
    before = CLEAN.copy()
    first = degrade(CLEAN, np.random.default_rng(7))
    assert np.array_equal(CLEAN, before)
    assert first.dtype == np.uint8 and first.shape == CLEAN.shape
    assert np.array_equal(first, degrade(CLEAN, np.random.default_rng(7)))
    assert not np.array_equal(first, degrade(CLEAN, np.random.default_rng(8)))
