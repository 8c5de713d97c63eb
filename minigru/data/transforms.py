"""Batch transforms: data augmentation vectorised over a whole batch, on the batch's own backend.

A transform is any callable ``t(batch, rng) -> batch``:

* ``batch`` is an ``(N, C, H, W)`` array (NumPy or CuPy); the result stays on
  the same backend (``xp = get_array_module(batch)``) and, for float input, in
  the same dtype;
* ``rng`` is a ``numpy.random.Generator``: random parameters (flip or not,
  crop offsets, angles) are drawn *per sample on the host*, so a seed gives the
  same augmentation on NumPy and CuPy; only the pixel work runs on the backend;
* the input is never modified.

Transforms chain with :class:`Compose`. Those that need floats raise a clear
error on uint8 input: start a pipeline with :class:`ToFloat`, or let the
:class:`~minigru.data.DataLoader` scale uint8 images to ``[0, 1]`` first
(which it does unless the pipeline starts with ``ToFloat``).

Hot paths keep scratch arrays between calls (:class:`Workspace`): fresh large
allocations cost page faults on every batch, which made the affine warp 2-3
times slower. The arrays returned are always new.
The geometric transforms (rotation, shift, shear, zoom) live in
:mod:`minigru.data.affine`.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..backend import backend_of, get_array_module

__all__ = ["Transform", "Compose", "ToFloat", "Normalize", "RandomHorizontalFlip", "AlternatingFlip", "RandomCrop",
           "Workspace", "check_batch", "pair"]


class Workspace:
    """Scratch arrays kept between calls, keyed by (name, backend, shape, dtype, fill).

    ``get`` returns the same array for the same key, so a transform applied to
    batch after batch of one shape allocates nothing after the first call.
    Contents are whatever the last call left, except that an array asked for
    with ``fill`` is filled once, when it is created.
    """

    _MAX_ARRAYS = 32  # shapes change rarely (the last, smaller batch); bound memory anyway

    def __init__(self):
        self._arrays = {}

    def get(self, xp, name: str, shape, dtype, fill=None):
        key = (name, xp.__name__, tuple(shape), np.dtype(dtype).str, fill)
        array = self._arrays.get(key)
        if array is None:
            if len(self._arrays) >= self._MAX_ARRAYS:
                self._arrays.clear()
            array = xp.empty(shape, dtype=dtype) if fill is None else xp.full(shape, fill, dtype=dtype)
            self._arrays[key] = array
        return array

    def __deepcopy__(self, memo):
        return Workspace()  # scratch contents are never worth copying


def check_batch(x, who: str, need_float: bool = True) -> None:
    """Raise a clear error unless ``x`` is an (N, C, H, W) NumPy/CuPy array (floating if ``need_float``)."""
    backend_of(x)  # TypeError naming the type for lists, torch tensors, ...
    if x.ndim != 4:
        raise ValueError(f"{who} expects a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if need_float and np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{who} expects a floating-point batch, got {x.dtype}; put ToFloat() first in the "
                        "pipeline (or let the DataLoader scale uint8 images to [0, 1])")


def pair(value, who: str, name: str) -> tuple[int, int]:
    """An int or an (int, int) pair as a (height, width) tuple of positive ints."""
    if isinstance(value, numbers.Integral):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{who}: {name} must be an int or a (height, width) pair, got {value!r}") from err
    if h <= 0 or w <= 0:
        raise ValueError(f"{who}: {name} must be positive, got {(h, w)}")
    return h, w


class Transform:
    """Base class of the built-in transforms (a plain function ``f(batch, rng)`` works as well).

    ``accepts_uint8`` tells the DataLoader that the transform takes raw uint8
    images itself (only :class:`ToFloat` does). ``uses_sample_ids`` tells it that the
    transform also needs to know which samples (their dataset indices) and which epoch it
    sees: it is then called as ``t(batch, rng, ids=..., epoch=...)`` (only
    :class:`AlternatingFlip` does).
    """

    accepts_uint8 = False
    uses_sample_ids = False

    def __call__(self, batch, rng):
        raise NotImplementedError(f"{type(self).__name__} must define __call__(batch, rng)")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self) -> dict:
        return {}


class Compose(Transform):
    """Apply transforms in order: ``Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable; a transform is a callable t(batch, rng)")

    @property
    def accepts_uint8(self):
        return bool(self.transforms) and getattr(self.transforms[0], "accepts_uint8", False)

    @property
    def uses_sample_ids(self):
        return any(getattr(t, "uses_sample_ids", False) for t in self.transforms)

    def __call__(self, batch, rng=None, **sample_ids):
        for t in self.transforms:
            batch = t(batch, rng, **sample_ids) if getattr(t, "uses_sample_ids", False) else t(batch, rng)
        return batch

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class ToFloat(Transform):
    """uint8 images 0..255 -> floats in [0, 1]: ``x / 255`` in ``dtype`` (default float32)."""

    accepts_uint8 = True

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"ToFloat: dtype must be floating point, got {self.dtype}")

    def __call__(self, batch, rng=None):
        backend_of(batch)
        if batch.dtype != np.uint8:
            raise TypeError(f"ToFloat expects uint8 images, got {batch.dtype}: the batch is already converted "
                            "(the DataLoader scales uint8 to [0, 1] itself unless the pipeline starts with ToFloat)")
        out = batch.astype(self.dtype)
        out *= self.dtype.type(1.0 / 255.0)
        return out

    def _repr_args(self):
        return {"dtype": self.dtype.name}


class Normalize(Transform):
    """Per-channel standardisation ``(x - mean[c]) / std[c]``; ``mean``/``std`` are numbers or length-C sequences."""

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError("Normalize: mean and std must be numbers or 1-D sequences (one value per channel)")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")

    def __call__(self, batch, rng=None):
        check_batch(batch, "Normalize")
        xp = get_array_module(batch)
        C = batch.shape[1]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, C):
                raise ValueError(f"Normalize: {values.size} {name} values for a batch of {C} channels")
        mean = xp.asarray(self.mean.reshape(1, -1, 1, 1), dtype=batch.dtype)
        inv_std = xp.asarray(1.0 / self.std.reshape(1, -1, 1, 1), dtype=batch.dtype)
        out = batch - mean
        out *= inv_std
        return out

    def _repr_args(self):
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def _mirror_samples(batch, which):
    """A copy of ``batch`` (N, C, H, W) with the samples where the host bool mask ``which`` (N,) is set
    mirrored left-right; the others unchanged."""
    out = batch.copy()
    flipped = np.flatnonzero(which)
    if flipped.size:
        idx = get_array_module(batch).asarray(flipped)
        out[idx] = batch[idx, ..., ::-1]
    return out


class RandomHorizontalFlip(Transform):
    """Mirror each sample left-right with probability ``p`` (one coin per sample)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, batch, rng):
        check_batch(batch, "RandomHorizontalFlip", need_float=False)
        return _mirror_samples(batch, rng.random(len(batch)) < self.p)  # host draw: same on NumPy and CuPy

    def _repr_args(self):
        return {"p": self.p}


class AlternatingFlip(Transform):
    """Airbench's derandomised flip: each sample is mirrored in every other epoch.

    In epoch 0 a fixed half of the samples is mirrored (one coin per sample index, drawn from ``seed``);
    in every later epoch the flip of each sample is the opposite of the epoch before. Random flips can
    leave an image the same way round for several epochs in a row; alternating shows both versions every
    two epochs. It must know which samples and which epoch it sees, so the DataLoader calls it as
    ``t(batch, rng, ids=..., epoch=...)`` (``uses_sample_ids``); ``rng`` is not used.
    """

    uses_sample_ids = True
    _CHUNK = 4096                    # coins are drawn per block of indices, so they never depend on the batch

    def __init__(self, seed: int = 0):
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"AlternatingFlip: seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self._coins = {}

    def coins(self, ids) -> np.ndarray:
        """The epoch-0 flips (bool) of the samples ``ids``: a fixed coin per index."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(ids.shape, dtype=bool)
        for block in np.unique(ids // self._CHUNK):
            if block not in self._coins:
                self._coins[block] = np.random.default_rng([self.seed, int(block)]).random(self._CHUNK) < 0.5
            here = ids // self._CHUNK == block
            out[here] = self._coins[block][ids[here] % self._CHUNK]
        return out

    def __call__(self, batch, rng=None, *, ids=None, epoch=None):
        check_batch(batch, "AlternatingFlip", need_float=False)
        if ids is None or epoch is None:
            raise TypeError("AlternatingFlip needs the samples' indices and the epoch (ids=..., epoch=...); a "
                            "DataLoader passes them")
        ids = np.asarray(ids)
        if ids.shape != (len(batch),):
            raise ValueError(f"AlternatingFlip: {ids.size} sample ids for a batch of {len(batch)}")
        return _mirror_samples(batch, self.coins(ids) ^ bool(int(epoch) % 2))

    def _repr_args(self):
        return {"seed": self.seed}


class RandomCrop(Transform):
    """Pad each side by ``padding`` pixels, then cut a ``size`` window at a random offset per sample.

    ``RandomCrop(32, padding=4)`` on 32x32 images is the classic CIFAR
    augmentation: shifts of up to 4 pixels, the uncovered border filled with
    ``fill`` (zeros). ``padding_mode="reflect"`` mirrors the image into the
    border instead, without repeating the edge pixel (``numpy.pad``'s and
    torch's ``"reflect"``; it needs ``padding`` smaller than the image's
    height and width): airbench's translation by up to 2 pixels, which adds
    no black border for the model to learn to ignore. Offsets ``(oy, ox)``
    are drawn uniformly from ``0..H+2p-h`` and ``0..W+2p-w``, and the output
    is ``padded[n, :, oy:oy+h, ox:ox+w]``, gathered for the whole batch at
    once from a strided view of all windows.
    """

    PADDING_MODES = ("constant", "reflect")

    def __init__(self, size, padding: int = 0, fill: float = 0.0, padding_mode: str = "constant"):
        self.size = pair(size, "RandomCrop", "size")
        if not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be a non-negative int, got {padding!r}")
        if padding_mode not in self.PADDING_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {', '.join(self.PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        self.padding = int(padding)
        self.fill = float(fill)
        self.padding_mode = padding_mode
        self._workspace = Workspace()

    def __call__(self, batch, rng):
        check_batch(batch, "RandomCrop", need_float=False)
        xp = get_array_module(batch)
        N, C, H, W = batch.shape
        h, w = self.size
        p = self.padding
        Hp, Wp = H + 2 * p, W + 2 * p
        if h > Hp or w > Wp:
            raise ValueError(f"RandomCrop: crop {h}x{w} is larger than the padded image {Hp}x{Wp}")
        if self.padding_mode == "reflect" and p >= min(H, W):
            raise ValueError(f"RandomCrop: reflect padding {p} needs images larger than {p} pixels on each side, "
                             f"got {H}x{W}")
        oy = rng.integers(0, Hp - h + 1, size=N)
        ox = rng.integers(0, Wp - w + 1, size=N)
        if p and self.padding_mode == "reflect":
            padded = xp.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
        elif p:
            # The border is filled once when the buffer is made; each call only rewrites the interior.
            padded = self._workspace.get(xp, "padded", (N, C, Hp, Wp), batch.dtype, fill=self.fill)
            padded[:, :, p:p + H, p:p + W] = batch
        else:
            padded = batch
        s = padded.strides
        # windows[n, c, i, j] is the h x w window whose top-left corner is (i, j): no copy is made.
        windows = xp.lib.stride_tricks.as_strided(
            padded, shape=(N, C, Hp - h + 1, Wp - w + 1, h, w), strides=(s[0], s[1], s[2], s[3], s[2], s[3]))
        return windows[xp.arange(N), :, xp.asarray(oy), xp.asarray(ox)]

    def _repr_args(self):
        return {"size": self.size, "padding": self.padding, "fill": self.fill}
