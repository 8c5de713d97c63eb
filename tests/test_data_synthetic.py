"""SYNTHETIC sets: make_shapes (classification) and make_moving_shapes (bouncing-shape videos)."""
import numpy as np
import pytest

from minigru.data import ClassificationData, SHAPE_NAMES, make_moving_shapes, make_shapes
from minigru.data.synthetic import _bounce


def test_shapes_format_like_cifar():
    data = make_shapes(40, image_size=16, seed=1, n_test=12, n_classes=4)
    assert isinstance(data, ClassificationData)
    assert data.train_images.shape == (40, 3, 16, 16) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (12, 3, 16, 16)
    assert data.train_labels.dtype == np.int64 and data.test_labels.dtype == np.int64
    assert data.classes == SHAPE_NAMES[:4]
    assert all(name.startswith("synthetic-") for name in SHAPE_NAMES)
    np.testing.assert_array_equal(np.bincount(data.train_labels), [10, 10, 10, 10])  # balanced
    assert len(make_shapes(10).test_images) == 2


def test_shapes_reproducible_and_seeded():
    a, b, c = make_shapes(8, seed=3), make_shapes(8, seed=3), make_shapes(8, seed=4)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(a.train_labels, b.train_labels)
    assert not np.array_equal(a.train_images, c.train_images)


def test_shape_masks_have_the_named_geometry():
    # Without noise the images have two colours; the fraction of the shape's bounding box it fills tells
    # the shapes apart: a square fills all of its box, a circle pi/4, a diamond or triangle about half.
    data = make_shapes(200, image_size=48, seed=0, n_classes=4, noise=0.0)
    fill = {}
    for image, label in zip(data.train_images, data.train_labels):
        corner = image[:, 0, 0]
        mask = np.any(image != corner[:, None, None], axis=0)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        fill.setdefault(data.classes[label], []).append(mask.sum() / box)
    mean = {k: float(np.mean(v)) for k, v in fill.items()}
    assert mean["synthetic-square"] == pytest.approx(1.0, abs=0.02)
    assert mean["synthetic-circle"] == pytest.approx(np.pi / 4, abs=0.06)
    assert mean["synthetic-diamond"] == pytest.approx(0.5, abs=0.08)
    assert mean["synthetic-triangle"] == pytest.approx(0.5, abs=0.08)


def test_shapes_argument_errors():
    with pytest.raises(ValueError, match="n_classes must be between 2 and 10"):
        make_shapes(10, n_classes=11)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        make_shapes(0)
    with pytest.raises(ValueError, match="image_size must be an int >= 8"):
        make_shapes(4, image_size=4)


def test_bounce_reflects_off_the_walls():
    positions = _bounce(np.array([1.0, 5.0]), np.array([2.0, -3.0]), np.array([0.0, 0.0]),
                        np.array([4.0, 6.0]), 6)
    # hand-worked: 1 -> 3 -> 5 reflects to 3 -> 1 ...; 5 -> 2 -> -1 reflects to 1 -> 4 -> 7 reflects to 5
    np.testing.assert_allclose(positions[0], [1, 3, 3, 1, 1, 3])
    np.testing.assert_allclose(positions[1], [5, 2, 1, 4, 5, 2])


def test_moving_shapes_shape_range_and_motion():
    video = make_moving_shapes(6, n_frames=5, image_size=20, n_shapes=1, channels=1, seed=2)
    assert video.shape == (6, 5, 1, 20, 20) and video.dtype == np.float32
    assert video.min() >= 0.0 and video.max() <= 1.0
    areas = (video > 0.5).sum(axis=(2, 3, 4))
    # one shape per sequence, visible in every frame (its pixel count varies a little with sub-pixel position)
    assert np.all(areas > 0) and np.all(areas.max(1) <= 3 * areas.min(1))
    moved = [not np.array_equal(v[0], v[-1]) for v in video]
    assert sum(moved) >= 4
    colour = make_moving_shapes(2, n_frames=3, image_size=16, channels=3, noise=0.05, seed=0)
    assert colour.shape == (2, 3, 3, 16, 16) and 0.0 <= colour.min() and colour.max() <= 1.0
    np.testing.assert_array_equal(make_moving_shapes(2, seed=7), make_moving_shapes(2, seed=7))


def test_moving_shapes_errors():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        make_moving_shapes(2, channels=2)
    with pytest.raises(ValueError, match="n_frames must be an int >= 1"):
        make_moving_shapes(2, n_frames=0)
