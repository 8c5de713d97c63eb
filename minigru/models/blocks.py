"""Building blocks shared by the models: VGG-style conv blocks, the image-to-sequence reshape and
the fully connected classifier head.

``conv_block`` is the unit every convolutional model here stacks::

    [Conv2d 3x3 (pad 1) -> (BatchNorm2d) -> ReLU] x convs -> (MaxPool2d 2)

(computed with the last ReLU after the pooling, which gives the same result
at a quarter of the cost; see :func:`conv_block`).

``ImageToSequence`` turns a feature map into a sequence for a recurrent
layer, reading it column by column (CNNGRU) or row by row (RowGRU). It is a
pure reshape, so its backward is the inverse reshape (docs/models.md).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..nn import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential
from .._checks import check_image_input, positive_int

__all__ = ["conv_block", "conv_stack", "mlp_classifier", "ImageToSequence", "check_widths", "positive_int", "image_hw",
           "feature_map_size", "block_convs"]


def check_widths(owner: str, widths) -> tuple:
    """A non-empty tuple of positive channel counts (one per conv block)."""
    if isinstance(widths, numbers.Integral):
        widths = (widths,)
    widths = tuple(widths)
    if not widths:
        raise ValueError(f"{owner}: widths must list at least one channel count, got {widths!r}")
    return tuple(positive_int(owner, "each entry of widths", w) for w in widths)


def image_hw(owner: str, image_size) -> tuple:
    """(H, W) from an int or a pair of positive ints."""
    if isinstance(image_size, numbers.Integral):
        image_size = (image_size, image_size)
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: image_size must be an int or a pair (H, W), got {image_size!r}") from None
    return positive_int(owner, "image height", height), positive_int(owner, "image width", width)


def feature_map_size(owner: str, image_size: tuple, blocks: int) -> tuple:
    """(H', W') after ``blocks`` 2x2 max pools (floor division, as MaxPool2d(2)); an error if nothing is left."""
    height, width = image_size
    map_h, map_w = height >> blocks, width >> blocks
    if map_h < 1 or map_w < 1:
        raise ValueError(f"{owner}: a {height}x{width} image is too small for {blocks} conv blocks (each halves "
                         f"it); use fewer widths or images of at least {2 ** blocks}x{2 ** blocks}")
    return map_h, map_w


def conv_block(in_channels: int, out_channels: int, *, convs: int = 1, batch_norm: bool = False,
               pool: bool = True, rng=None, dtype=None) -> list:
    """The layers of one block: ``convs`` x [Conv2d 3x3 pad 1 (-> BatchNorm2d) -> ReLU], then MaxPool2d(2).

    (N, in_channels, H, W) -> (N, out_channels, H/2, W/2) (or H, W without ``pool``).
    With batch norm the convolution has no bias: the norm's shift β replaces it
    (a bias before a batch norm is subtracted again with the batch mean).

    The last ReLU is placed *after* the pooling: ReLU is monotonic, so
    ``maxpool(relu(x)) = relu(maxpool(x))``, and so are the gradients (away
    from exact ties at 0, which have probability zero). The same function then
    costs a quarter of the ReLU work. Returns a list of modules, so that stacks
    stay one flat Sequential.
    """
    layers = []
    channels = in_channels
    for i in range(convs):
        layers.append(Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm, rng=rng, dtype=dtype))
        if batch_norm:
            layers.append(BatchNorm2d(out_channels, dtype=dtype))
        if pool and i == convs - 1:
            layers.append(MaxPool2d(2))
        layers.append(ReLU())
        channels = out_channels
    return layers


def conv_stack(in_channels: int, widths, *, convs_per_block=1, batch_norm: bool = False,
               rng=None, dtype=None) -> Sequential:
    """One flat Sequential of ``len(widths)`` conv blocks, each halving the image (see :func:`conv_block`).

    ``convs_per_block``: one int for every block, or one per block (e.g. ``(1, 1, 2)``).
    (N, in_channels, H, W) -> (N, widths[-1], H / 2**len(widths), W / 2**len(widths)).
    """
    convs = block_convs("conv_stack", convs_per_block, len(widths))
    layers = []
    channels = in_channels
    for width, count in zip(widths, convs):
        layers += conv_block(channels, width, convs=count, batch_norm=batch_norm, rng=rng, dtype=dtype)
        channels = width
    return Sequential(*layers)


def mlp_classifier(in_features: int, hidden, num_classes: int, *, dropout: float = 0.0, rng=None,
                   dtype=None) -> Sequential:
    """Flatten -> [Linear -> ReLU -> (Dropout)] for each size in ``hidden`` -> Linear to ``num_classes``.

    (N, ...) with ``in_features`` numbers per sample -> logits (N, num_classes). ``dropout`` 0 adds no
    Dropout layers, so the Sequential's numbering (and the state dict's keys) stays that of the plain MLP.
    """
    layers = [Flatten()]
    features = in_features
    for size in hidden:
        layers += [Linear(features, size, rng=rng, dtype=dtype), ReLU()]
        if dropout > 0:
            layers.append(Dropout(dropout, rng=rng))
        features = size
    layers.append(Linear(features, num_classes, rng=rng, dtype=dtype))
    return Sequential(*layers)


def block_convs(owner: str, convs_per_block, blocks: int) -> tuple:
    """Convolutions per block as a tuple of ``blocks`` positive ints (from an int or a sequence)."""
    if isinstance(convs_per_block, numbers.Integral):
        convs_per_block = (convs_per_block,) * blocks
    convs = tuple(positive_int(owner, "convs_per_block", c) for c in convs_per_block)
    if len(convs) != blocks:
        raise ValueError(f"{owner}: convs_per_block lists {len(convs)} counts for {blocks} blocks (widths)")
    return convs


class ImageToSequence(Module):
    """Read a feature map (N, C, H, W) as a time-major sequence for a recurrent layer.

    * ``along="columns"``: T = W steps, step t is column t: out (W, N, C*H) with
      ``out[t, n, c*H + h] = x[n, c, h, t]`` (CNNGRU reads left to right);
    * ``along="rows"``: T = H steps, step t is row t: out (H, N, C*W) with
      ``out[t, n, c*W + w] = x[n, c, t, w]`` (RowGRU reads top to bottom).

    In torch terms: ``x.permute(3, 0, 1, 2).reshape(W, N, C*H)`` (columns) and
    ``x.permute(2, 0, 1, 3).reshape(H, N, C*W)`` (rows). A pure rearrangement
    of the same numbers, so backward applies the inverse permutation to dout:
    every gradient goes back to the pixel it came from.
    """

    _PERMUTATIONS = {"columns": (3, 0, 1, 2), "rows": (2, 0, 1, 3)}

    def __init__(self, along: str = "columns"):
        super().__init__()
        if along not in self._PERMUTATIONS:
            raise ValueError(f"ImageToSequence: along must be 'columns' or 'rows', got {along!r}")
        self.along = along

    def forward(self, x):
        check_image_input(self, x)
        xp = backend.get_array_module(x)
        moved = x.transpose(self._PERMUTATIONS[self.along])   # (T, N, C, other), a view
        T, N = moved.shape[:2]
        self._save_cache(tuple(moved.shape))
        # one copy into time-major order: each step's (N, features) block is contiguous for the GRU's GEMM
        return xp.ascontiguousarray(moved).reshape(T, N, -1)

    def backward(self, dout):
        moved_shape = self._pop_cache()
        T, N = moved_shape[:2]
        if tuple(dout.shape) != (T, N, int(np.prod(moved_shape[2:]))):
            raise ValueError(f"ImageToSequence.backward: dout must have the output's shape "
                             f"{(T, N, int(np.prod(moved_shape[2:])))}, got {tuple(dout.shape)}")
        xp = backend.get_array_module(dout)
        inverse = np.argsort(self._PERMUTATIONS[self.along])
        return xp.ascontiguousarray(dout.reshape(moved_shape).transpose(tuple(inverse)))

    def extra_repr(self):
        return f"along={self.along!r}"
