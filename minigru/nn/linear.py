"""Linear, Identity and Flatten layers (torch's names, arguments and layouts)."""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from .._checks import check_float_input, check_grad_shape
from . import init
from .module import Module

__all__ = ["Linear", "Identity", "Flatten"]


class Linear(Module):
    """y = x Wᵀ + b over the last dimension (docs/derivations.md eq. L1).

    Input (*, in_features) with any leading dimensions; output (*, out_features).
    Parameters as torch's: ``weight`` (out_features, in_features) and ``bias``
    (out_features,), both drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rng=None, dtype=None):
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear needs non-negative sizes, got in_features={in_features}, "
                             f"out_features={out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        rng = backend.make_rng(rng)  # one Generator for both draws (an int seed would repeat itself)
        bound = init.fan_in_bound(in_features)
        self.weight = init.uniform(rng, (out_features, in_features), bound, dtype)
        self.bias = init.uniform(rng, (out_features,), bound, dtype) if bias else None

    def forward(self, x):
        check_float_input(self, x, self.weight.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expected input of shape "
                             f"(*, {self.in_features}), got {tuple(x.shape)}")
        out, cache = F.linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        dx, dweight, dbias = F.linear_backward(dout, self._pop_cache())
        self.weight.grad += dweight
        if self.bias is not None:
            self.bias.grad += dbias
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged (a placeholder, as torch's; its arguments are ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x

    def backward(self, dout):
        return dout


class Flatten(Module):
    """Merge dimensions ``start_dim``..``end_dim`` into one: (N, C, H, W) -> (N, C·H·W) by default.

    Negative dimensions count from the end, as in torch. backward reshapes
    the gradient back to the input's shape.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def _dims(self, ndim):
        dims = []
        for name, d in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -max(ndim, 1) <= d < max(ndim, 1):
                raise ValueError(f"Flatten({self.start_dim}, {self.end_dim}): {name}={d} is out of range for a "
                                 f"{ndim}-D input (valid: {-max(ndim, 1)}..{max(ndim, 1) - 1})")
            dims.append(d % max(ndim, 1))
        if dims[0] > dims[1]:
            raise ValueError(f"Flatten: start_dim ({self.start_dim}) comes after end_dim ({self.end_dim}) "
                             f"for a {ndim}-D input")
        return dims

    def forward(self, x):
        backend.backend_of(x)
        start, end = self._dims(x.ndim)
        shape = tuple(x.shape)
        merged = int(np.prod(shape[start:end + 1], dtype=np.int64))
        out_shape = (*shape[:start], merged, *shape[end + 1:])
        self._save_cache((shape, out_shape))
        return x.reshape(out_shape)

    def backward(self, dout):
        shape, out_shape = self._pop_cache()
        # a gradient of the right size but the wrong shape would reshape into silently wrong numbers
        check_grad_shape("Flatten.backward", "dout", dout, out_shape)
        return dout.reshape(shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
