"""BatchNorm1d and BatchNorm2d with torch's arguments, parameters and buffers (docs/derivations.md §B).

Parameters: ``weight`` (γ) and ``bias`` (β), (num_features,), initialised to
ones and zeros (only with ``affine=True``). Buffers: ``running_mean`` (zeros),
``running_var`` (ones) and ``num_batches_tracked`` (0-d int64), only with
``track_running_stats=True``; so ``state_dict()`` keys and shapes are torch's.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from . import init
from .._checks import check_float_input
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Shared code of the batch-norm layers; subclasses say which input ranks they take."""

    _expected_ndims: tuple = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, dtype=None):
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"{type(self).__name__} needs num_features > 0, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.weight = init.ones((num_features,), dtype) if affine else None
        self.bias = init.zeros((num_features,), dtype) if affine else None
        if track_running_stats:
            xp = backend.get_xp()
            dt = init.resolve_dtype(dtype)
            self.register_buffer("running_mean", xp.zeros(num_features, dtype=dt))
            self.register_buffer("running_var", xp.ones(num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", xp.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def _param_dtype(self):
        for a in (self.weight.data if self.affine else None, self.running_mean):
            if a is not None:
                return a.dtype
        return None

    def _check_input(self, x):
        name = type(self).__name__
        check_float_input(self, x, self._param_dtype())
        if x.ndim not in self._expected_ndims:
            raise ValueError(f"{name} expected {' or '.join(f'{d}D' for d in self._expected_ndims)} input "
                             f"{self._layout}, got {x.ndim}D input of shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}) expected {self.num_features} channels in dim 1 "
                             f"{self._layout}, got shape {tuple(x.shape)}"
                             + (" — channels last?" if x.shape[-1] == self.num_features else ""))
        if self.training and x.size // x.shape[1] == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")

    def forward(self, x):
        self._check_input(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:           # cumulative moving average (eq. B5)
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        update_running = self.training and self.track_running_stats
        out, cache = F.batchnorm_forward(
            x,
            self.weight.data if self.affine else None,
            self.bias.data if self.affine else None,
            self.running_mean if (update_running or not use_batch_stats) else None,
            self.running_var if (update_running or not use_batch_stats) else None,
            training=use_batch_stats, momentum=momentum, eps=self.eps)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        dx, dweight, dbias = F.batchnorm_backward(dout, self._pop_cache())
        if self.affine:
            self.weight.grad += dweight
            self.bias.grad += dbias
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) or (N, C, L) input over N (and L), per channel C (eqs. B1-B6).

    Training normalises with the batch statistics and updates the running
    ones (momentum 0.1, or a cumulative average with ``momentum=None``);
    ``eval()`` normalises with the running statistics.
    """

    _expected_ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) input over N, H and W, per channel C (eqs. B1-B6); see BatchNorm1d."""

    _expected_ndims = (4,)
    _layout = "(N, C, H, W)"
