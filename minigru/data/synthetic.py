"""SYNTHETIC data sets, drawn procedurally: for offline demos, fast tests and notebooks' small mode.

Nothing here is real data, and every name says so: the class names start
with ``synthetic-``. Two generators:

* :func:`make_shapes` - a classification set of coloured shapes (circle,
  square, triangle, ...) on noisy backgrounds, returned as the same
  :class:`~minigru.data.ClassificationData` as :func:`~minigru.data.load_cifar10`
  (uint8 (N, 3, H, W) images, int64 labels), so code written for one runs on the other.
  The class depends only on the shape; colour, size, position and noise are random.
* :func:`make_moving_shapes` - sequences of shapes bouncing inside the frame
  (a procedural Moving-MNIST), float32 (N, T, C, H, W), for next-frame prediction.

Shapes are drawn as masks over normalised coordinates ``u = (x - cx)/r``,
``v = (y - cy)/r`` (``r`` the shape's radius in pixels, ``y`` down); every
shape fits inside ``|u|, |v| <= 1``.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..backend import make_rng
from .base import ClassificationData

__all__ = ["make_shapes", "make_moving_shapes", "SHAPE_NAMES"]


def _circle(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _triangle(u, v):  # apex up (v = -0.9), base along v = 0.8
    return (v <= 0.8) & (np.abs(u) <= (v + 0.9) * (0.95 / 1.7))


def _diamond(u, v):
    return np.abs(u) + np.abs(v) <= 1.0


def _plus(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))


def _ring(u, v):
    d2 = u * u + v * v
    return (d2 <= 1.0) & (d2 >= 0.55 ** 2)


def _hollow_square(u, v):
    m = np.maximum(np.abs(u), np.abs(v))
    return (m <= 0.85) & (m >= 0.5)


def _x_cross(u, v):
    return ((np.abs(u - v) <= 0.35) | (np.abs(u + v) <= 0.35)) & (np.maximum(np.abs(u), np.abs(v)) <= 0.85)


def _horizontal_bar(u, v):
    return (np.abs(v) <= 0.3) & (np.abs(u) <= 1.0)


def _vertical_bar(u, v):
    return (np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)


_SHAPES = (_circle, _square, _triangle, _diamond, _plus, _ring, _hollow_square, _x_cross, _horizontal_bar,
           _vertical_bar)
SHAPE_NAMES = tuple("synthetic-" + f.__name__.lstrip("_").replace("_", "-") for f in _SHAPES)


def _draw_masks(kinds, cx, cy, radius, size: int, chunk: int = 1024) -> np.ndarray:
    """Boolean masks (n, ..., size, size) of shape ``kinds[i]`` centred at (cx, cy) with ``radius``.

    ``cx``, ``cy`` are (n,) or (n, T) (one centre per frame); ``kinds`` and ``radius`` are (n,).
    Works through the samples ``chunk`` at a time to bound the memory of the coordinate grids.
    """
    n = len(kinds)
    coords = np.arange(size, dtype=np.float32)
    extra = (None,) * (np.ndim(cx) - 1)
    masks = np.zeros((*np.shape(cx), size, size), dtype=bool)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        r = radius[part].astype(np.float32)[(slice(None), *extra, None, None)]
        u = (coords[None, None, :] - cx[part].astype(np.float32)[..., None, None]) / r
        v = (coords[None, :, None] - cy[part].astype(np.float32)[..., None, None]) / r
        u, v = np.broadcast_arrays(u, v)
        k_part, m_part = kinds[part], masks[part]
        for k, shape in enumerate(_SHAPES):  # a loop over the 10 shape kinds, vectorised over the samples
            sel = k_part == k
            if sel.any():
                m_part[sel] = shape(u[sel], v[sel])
    return masks


def _check_count(value, name: str, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _shape_images(n: int, n_classes: int, size: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)  # balanced classes
    radius = rng.uniform(0.22, 0.38, size=n) * size
    cx = rng.uniform(radius, size - 1 - radius)
    cy = rng.uniform(radius, size - 1 - radius)
    masks = _draw_masks(labels, cx, cy, radius, size)                         # (n, H, W)
    background = rng.uniform(0.0, 0.45, size=(n, 3, 1, 1))
    # Shape colours are bright in at least one channel, so every shape stands out from its background.
    foreground = rng.uniform(0.0, 1.0, size=(n, 3, 1, 1))
    foreground[np.arange(n), rng.integers(0, 3, size=n)] = rng.uniform(0.75, 1.0, size=(n, 1, 1))
    images = np.where(masks[:, None], foreground, background)
    images += rng.normal(0.0, noise, size=images.shape)
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8), labels


def make_shapes(n: int, image_size: int = 32, seed=0, *, n_test: int | None = None, n_classes: int = 10,
                noise: float = 0.08) -> ClassificationData:
    """A SYNTHETIC image classification set: coloured shapes on noisy backgrounds.

    n : number of training images; ``n_test`` test images (default ``n // 5``, at least 1).
    image_size : images are (3, image_size, image_size), image_size >= 8.
    seed : int or Generator; the same seed gives the same images.
    n_classes : 2..10 shape classes, the first ``n_classes`` of :data:`SHAPE_NAMES`
        (circle, square, triangle, diamond, plus, ring, hollow square, x cross,
        horizontal bar, vertical bar), each prefixed ``synthetic-``.
    noise : standard deviation of the Gaussian pixel noise (on the 0..1 scale).

    Returns :class:`~minigru.data.ClassificationData`, exactly like
    :func:`~minigru.data.load_cifar10`: uint8 images (n, 3, S, S) and
    (n_test, 3, S, S), int64 labels, and the class names. Classes are balanced.
    """
    n = _check_count(n, "make_shapes: n")
    n_test = max(1, n // 5) if n_test is None else _check_count(n_test, "make_shapes: n_test")
    image_size = _check_count(image_size, "make_shapes: image_size", 8)
    if not isinstance(n_classes, numbers.Integral) or not 2 <= n_classes <= len(_SHAPES):
        raise ValueError(f"make_shapes: n_classes must be between 2 and {len(_SHAPES)}, got {n_classes!r}")
    if noise < 0:
        raise ValueError(f"make_shapes: noise must be >= 0, got {noise}")
    rng = make_rng(seed)
    train_images, train_labels = _shape_images(n, n_classes, image_size, noise, rng)
    test_images, test_labels = _shape_images(n_test, n_classes, image_size, noise, rng)
    return ClassificationData(train_images, train_labels, test_images, test_labels, SHAPE_NAMES[:n_classes])


def _bounce(start, velocity, low, high, n_frames: int) -> np.ndarray:
    """Positions (n, T) moving at constant ``velocity`` and reflecting off ``low`` and ``high``.

    Unfolding the reflections: with ``L = high - low`` and ``u = start - low + velocity t``,
    the position is ``low + L - |L - (u mod 2L)|`` (a triangle wave of period 2L).
    """
    span = high - low
    t = np.arange(n_frames)
    unfolded = (start - low)[:, None] + velocity[:, None] * t[None, :]
    folded = np.mod(unfolded, 2 * span[:, None])
    return low[:, None] + span[:, None] - np.abs(span[:, None] - folded)


def make_moving_shapes(n_sequences: int, n_frames: int = 10, image_size: int = 32, *, n_shapes: int = 2,
                       channels: int = 1, max_speed: float = 2.5, noise: float = 0.0, seed=0) -> np.ndarray:
    """SYNTHETIC "moving shapes" videos: shapes bouncing inside the frame, like a procedural Moving MNIST.

    n_sequences, n_frames, image_size : output shape (N, T, C, S, S).
    n_shapes : shapes per sequence, each of a random kind, size and colour,
        moving in a straight line at up to ``max_speed`` pixels per frame and
        bouncing off the edges (it always stays wholly inside the frame).
    channels : 1 (white shapes on black) or 3 (a random bright colour per shape).
    noise : standard deviation of Gaussian noise added to every pixel (then clipped to [0, 1]).
    seed : int or Generator.

    Returns float32 (N, T, C, S, S) in [0, 1]; overlapping shapes take the
    brighter value in each channel. Frame t+1 follows from frame t, so the set
    suits next-frame prediction with a ConvGRU.
    """
    n = _check_count(n_sequences, "make_moving_shapes: n_sequences")
    n_frames = _check_count(n_frames, "make_moving_shapes: n_frames")
    size = _check_count(image_size, "make_moving_shapes: image_size", 8)
    n_shapes = _check_count(n_shapes, "make_moving_shapes: n_shapes")
    if channels not in (1, 3):
        raise ValueError(f"make_moving_shapes: channels must be 1 or 3, got {channels!r}")
    if max_speed < 0 or noise < 0:
        raise ValueError("make_moving_shapes: max_speed and noise must be >= 0")
    rng = make_rng(seed)
    video = np.zeros((n, n_frames, channels, size, size), dtype=np.float32)
    for _ in range(n_shapes):  # a few shapes per sequence; each pass is vectorised over sequences and frames
        kinds = rng.integers(0, len(_SHAPES), size=n)
        radius = rng.uniform(0.12, 0.22, size=n) * size
        low, high = radius, size - 1 - radius
        speed = rng.uniform(0.0, max_speed, size=n)
        direction = rng.uniform(0.0, 2 * np.pi, size=n)
        cx = _bounce(rng.uniform(low, high), speed * np.cos(direction), low, high, n_frames)
        cy = _bounce(rng.uniform(low, high), speed * np.sin(direction), low, high, n_frames)
        colour = np.ones((n, channels)) if channels == 1 else rng.uniform(0.3, 1.0, size=(n, channels))
        masks = _draw_masks(kinds, cx, cy, radius, size)                      # (n, T, S, S)
        layer = masks[:, :, None] * colour[:, None, :, None, None].astype(np.float32)
        np.maximum(video, layer, out=video)
    if noise:
        video += rng.normal(0.0, noise, size=video.shape).astype(np.float32)
        np.clip(video, 0.0, 1.0, out=video)
    return video
