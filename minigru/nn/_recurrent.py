"""What the recurrent layers share: the multi-layer / bidirectional driver ``RNNBase`` and ``RNNCellBase``.

``RNNBase`` owns everything that GRU, LSTM and RNN have in common, with
PyTorch's names and layouts so that state dicts interchange with torch:
parameters ``weight_ih_l{k}`` (G*H, I_k), ``weight_hh_l{k}`` (G*H, H),
``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*H,), with a ``_reverse`` suffix for
the backward direction, all drawn from U(-1/sqrt(H), 1/sqrt(H)); input
(T, N, I), or (N, T, I) with ``batch_first``, or unbatched (T, I); states
(num_layers * num_directions, N, H). Layer k > 0 reads the concatenated
outputs of both directions of layer k - 1 (with dropout between layers in
training mode). The time loop itself lives in the sequence kernels of
:mod:`minigru.functional` (one layer, one direction each): the fused ones, or
with ``kernel="reference"`` the loop over the step kernels. A layer built
without ``kernel`` takes its class's entry of :data:`DEFAULT_KERNELS`.
:meth:`RNNBase.layer_parameters` gives the Parameters of one layer and direction.

``RNNCellBase`` holds the parameters and input checks of RNNCell, GRUCell and LSTMCell.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple, Optional

from .. import backend
from .. import functional as F
from .._checks import check_grad_shape, positive_int
from . import init
from .module import Module, Parameter, is_grad_enabled

__all__ = ["RNNBase", "RNNCellBase", "LayerParameters", "KERNELS", "DEFAULT_KERNELS"]

KERNELS = ("fused", "reference")
"""The sequence kernels a recurrent layer can run on: the fused ones (fast) or the reference loop over
the step kernels (:mod:`minigru.functional.reference`)."""

DEFAULT_KERNELS = {"rnn": "fused", "gru": "fused", "lstm": "fused"}
"""The kernel of a layer built without ``kernel=``, by the module of its step kernels (``RNNBase.step_module``).

"fused" everywhere in the library. A classroom assignment copy (``make-assignment``) rewrites this line
to "reference" for the assigned exercises' modules, so that there nn.GRU, nn.LSTM and nn.RNN, and every
model built on them, run on the students' step kernels by default."""


class LayerParameters(NamedTuple):
    """The Parameters of one layer and direction of a recurrent layer (biases None with bias=False)."""
    weight_ih: Parameter
    weight_hh: Parameter
    bias_ih: Optional[Parameter]
    bias_hh: Optional[Parameter]

    def arrays(self) -> tuple:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` as arrays (None for missing biases): a kernel's arguments."""
        return tuple(None if p is None else p.data for p in self)


def check_kernel(owner, kernel):
    """``kernel`` if it names one of :data:`KERNELS`, else a one-line ValueError."""
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"{owner}: kernel must be 'fused' or 'reference', got {kernel!r}")
    return kernel


def check_layer_input(owner, x, p, expected_features, layout):
    """What a recurrent layer checks of its input x in its own terms: the backend of its weight p and
    ``input_size``. Floating point and matching dtypes are the kernel's checks (it words them for the
    layer's user too), so they are not repeated here."""
    backend.backend_of(x)  # a TypeError naming the type for lists, torch tensors, ...
    if backend.backend_of(x) != backend.backend_of(p):
        raise backend.BackendMismatchError(
            f"{owner} parameters live on {backend.backend_of(p)} but x is a {backend.backend_of(x)} array; move "
            f"the layer with .to('{backend.backend_of(x)}') or x with minigru.backend.to_backend(x, "
            f"'{backend.backend_of(p)}')")
    if x.shape[-1] != expected_features:
        raise ValueError(f"{owner} expected input_size {expected_features} but got x with {x.shape[-1]} "
                         f"features; {layout}, got shape {tuple(x.shape)}")


class RNNBase(Module):
    """Parameters, input checks and the layer/direction loops shared by RNN, GRU and LSTM.

    Subclasses set ``num_gates``, ``state_names`` and ``step_module`` (the :mod:`minigru.functional`
    module of their step kernels, their key in :data:`DEFAULT_KERNELS`) and implement ``_run`` /
    ``_run_backward`` (one layer, one direction) with a functional kernel: the fused sequence
    kernel, or with ``kernel="reference"`` the loop over the step kernels. ``kernel=None`` (the
    default) means ``DEFAULT_KERNELS[step_module]``: "fused", except in a classroom assignment copy.
    :meth:`layer_parameters` gives the Parameters of one layer and direction.
    """

    num_gates = 1
    state_names = ("h0",)
    step_module = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, kernel=None, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.kernel = DEFAULT_KERNELS[self.step_module] if kernel is None else kernel
        self.input_size = positive_int(name, "input_size", input_size)
        self.hidden_size = positive_int(name, "hidden_size", hidden_size)
        self.num_layers = positive_int(name, "num_layers", num_layers)
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers, so it does nothing with num_layers=1",
                          UserWarning, stacklevel=2)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        # one Generator for the initial weights and, later, the dropout masks (replayed by gradcheck)
        self.rng = backend.make_rng(rng)
        bound = 1.0 / math.sqrt(self.hidden_size)
        rows = self.num_gates * self.hidden_size
        for layer in range(self.num_layers):
            features = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = self._suffix(layer, direction)
                setattr(self, "weight_ih" + suffix, init.uniform(self.rng, (rows, features), bound, dtype))
                setattr(self, "weight_hh" + suffix, init.uniform(self.rng, (rows, self.hidden_size), bound, dtype))
                if self.bias:
                    setattr(self, "bias_ih" + suffix, init.uniform(self.rng, (rows,), bound, dtype))
                    setattr(self, "bias_hh" + suffix, init.uniform(self.rng, (rows,), bound, dtype))

    @staticmethod
    def _suffix(layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    @staticmethod
    def layer_key(layer: int, direction: int = 0) -> str:
        """``"l{layer}"`` or ``"l{layer}_reverse"``: the suffix of that layer's and direction's parameter names."""
        return RNNBase._suffix(layer, direction)[1:]

    def layer_parameters(self, layer: int, direction: int = 0) -> LayerParameters:
        """The Parameters of layer ``layer`` (0-based), direction ``direction`` (0 forward, 1 reverse).

        ``weight_ih_l{layer}[_reverse]`` and friends as a :class:`LayerParameters`; the biases are None
        for a layer built with ``bias=False``. ``.arrays()`` gives the arrays a kernel takes.
        """
        if not (isinstance(layer, numbers.Integral) and 0 <= layer < self.num_layers):
            raise IndexError(f"{type(self).__name__}: layer must be in 0..{self.num_layers - 1}, got {layer!r}")
        if direction not in range(self.num_directions):
            raise IndexError(f"{type(self).__name__}: direction must be in 0..{self.num_directions - 1}, "
                             f"got {direction!r}")
        suffix = self._suffix(layer, direction)
        found = [self._parameters.get(n + suffix) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        return LayerParameters(*found)

    @property
    def kernel(self) -> str:
        """``"fused"`` (the fast sequence kernels) or ``"reference"`` (the loop over the step kernels)."""
        return self.__dict__["_kernel"]

    @kernel.setter
    def kernel(self, value):
        object.__setattr__(self, "_kernel", check_kernel(type(self).__name__, value))

    # ------------------------------------------------------------------ input checks
    def _time_major(self, x):
        """(T, N, I) view of the input, and whether it was batched."""
        name = type(self).__name__
        backend.backend_of(x)
        if x.ndim not in (2, 3):
            raise ValueError(f"{name} expected x of shape {self._layout()} (or unbatched (T, input_size)), "
                             f"got {x.ndim}-D shape {tuple(x.shape)}")
        check_layer_input(name, x, self.layer_parameters(0).weight_ih.data, self.input_size,
                          f"with batch_first={self.batch_first} x is {self._layout()}")
        if x.ndim == 2:
            return x[:, None, :], False
        return (x.transpose(1, 0, 2) if self.batch_first else x), True

    def _layout(self):
        return "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"

    def _initial_states(self, hx, batch, batched, like):
        """Per (layer, direction), a tuple of (N, H) initial states or Nones, from h0 (and c0)."""
        name = type(self).__name__
        count = self.num_layers * self.num_directions
        if hx is None:
            hx = (None,) * len(self.state_names)
        elif len(self.state_names) == 1:
            hx = (hx,)
        elif not isinstance(hx, (tuple, list)) or len(hx) != len(self.state_names):
            raise TypeError(f"{name} expects hx as a tuple {tuple(self.state_names)} or None")
        expected = (count, batch, self.hidden_size) if batched else (count, self.hidden_size)
        checked = []
        for state_name, s in zip(self.state_names, hx):
            if s is None:
                checked.append([None] * count)
                continue
            backend.backend_of(s)
            if backend.backend_of(s) != backend.backend_of(like):
                raise backend.BackendMismatchError(f"{name}: {state_name} is a {backend.backend_of(s)} array but x "
                                                   f"is {backend.backend_of(like)}")
            if tuple(s.shape) != expected:
                raise ValueError(f"{name} expected {state_name} of shape {expected} = (num_layers * num_directions, "
                                 f"{'batch, ' if batched else ''}hidden_size), got {tuple(s.shape)}")
            checked.append([s[k] if batched else s[k][None, :] for k in range(count)])
        return [tuple(states[k] for states in checked) for k in range(count)]

    # ------------------------------------------------------------------ the driver
    def _forward_layers(self, x, hx):
        """Run all layers and directions.

        Returns (out in x's layout, the final states per (layer, direction), whether x was batched).
        """
        x_tm, batched = self._time_major(x)
        xp = backend.get_array_module(x_tm)
        states0 = self._initial_states(hx, x_tm.shape[1], batched, x_tm)
        layer_input, caches, masks, finals = x_tm, [], [], []
        hidden = self.hidden_size
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                params = self.layer_parameters(layer, direction).arrays()
                k = layer * self.num_directions + direction
                seq = layer_input if direction == 0 else layer_input[::-1]
                hs, last, cache = self._run(seq, states0[k], params)
                outputs.append(hs if direction == 0 else hs[::-1])
                finals.append(last)
                caches.append(cache)
            if self.num_directions == 1:
                out = outputs[0]
            else:
                out = xp.empty(outputs[0].shape[:2] + (2 * hidden,), dtype=x_tm.dtype)
                out[..., :hidden], out[..., hidden:] = outputs
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._dropout_mask(out)
                out = out * mask
            masks.append(mask)
            layer_input = out
        if is_grad_enabled():
            self._save_cache((caches, masks, batched, layer_input.shape))
        else:
            for cache in caches:
                F.release_cache(cache)
        out = layer_input
        if not batched:
            out = out[:, 0]
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        return out, finals, batched

    def _dropout_mask(self, out):
        """Inverted dropout between layers: keep with probability 1 - p and scale by 1/(1 - p)."""
        if self.dropout >= 1:
            return backend.get_array_module(out).zeros_like(out)
        keep = backend.random_uniform(self.rng, out.shape, dtype=out.dtype, like=out) >= self.dropout
        return keep.astype(out.dtype) / out.dtype.type(1 - self.dropout)

    def _stack_states(self, finals, index, batched):
        xp = backend.get_array_module(finals[0][index])
        stacked = xp.stack([f[index] for f in finals])
        return stacked if batched else stacked[:, 0]

    def _backward_layers(self, dout, dstates_n):
        """Backward through all layers; ``dstates_n`` is a tuple (dh_n[, dc_n]) of arrays or None.

        Adds the parameter gradients and returns (dx, [dstate0 arrays...]) in the input's layouts.
        """
        caches, masks, batched, out_shape = self._pop_cache()
        name = type(self).__name__
        count = self.num_layers * self.num_directions
        hidden = self.hidden_size
        steps, batch = out_shape[:2]
        if not batched:
            expected = (steps, out_shape[2])
        elif self.batch_first:
            expected = (batch, steps, out_shape[2])
        else:
            expected = tuple(out_shape)
        check_grad_shape(f"{name}.backward", "dout", dout, expected, optional=True)
        grad = None
        if dout is not None:
            grad = dout[:, None, :] if not batched else (dout.transpose(1, 0, 2) if self.batch_first else dout)
        dfinal = []
        for state_name, d in zip(self.state_names, dstates_n):
            expected = (count, batch, hidden) if batched else (count, hidden)
            check_grad_shape(f"{name}.backward", f"d{state_name[0]}_n", d, expected, optional=True)
            if d is None:
                dfinal.append([None] * count)
                continue
            if not batched:
                d = d[:, None, :]
            dfinal.append([d[k] for k in range(count)])
        dstates0 = [[None] * count for _ in dstates_n]
        for layer in range(self.num_layers - 1, -1, -1):
            if masks[layer] is not None:
                grad = grad * masks[layer]
            dx_layer = None
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                dhs = None if grad is None else grad[..., direction * hidden:(direction + 1) * hidden]
                if direction == 1 and dhs is not None:
                    dhs = dhs[::-1]
                dx, dstate0, dparams = self._run_backward(dhs, tuple(df[k] for df in dfinal), caches[k])
                if direction == 1:
                    dx = dx[::-1]
                dx_layer = dx if dx_layer is None else dx_layer + dx
                for p, g in zip(self.layer_parameters(layer, direction), dparams):
                    if p is not None:
                        p.grad += g
                for which, s in enumerate(dstate0):
                    dstates0[which][k] = s
            grad = dx_layer
        xp = backend.get_array_module(grad)
        dstacked = [xp.stack(ds) if batched else xp.stack(ds)[:, 0] for ds in dstates0]
        if not batched:
            dx = grad[:, 0]
        elif self.batch_first:
            dx = grad.transpose(1, 0, 2)
        else:
            dx = grad
        return dx, dstacked

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.kernel != "fused":
            s += f", kernel={self.kernel!r}"
        return s


class RNNCellBase(Module):
    """Parameters and input checks shared by RNNCell, GRUCell and LSTMCell (torch's names and init)."""

    num_gates = 1

    def __init__(self, input_size, hidden_size, bias=True, *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = positive_int(name, "input_size", input_size)
        self.hidden_size = positive_int(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        rng = backend.make_rng(rng)
        bound = 1.0 / math.sqrt(self.hidden_size)
        rows = self.num_gates * self.hidden_size
        self.weight_ih = init.uniform(rng, (rows, self.input_size), bound, dtype)
        self.weight_hh = init.uniform(rng, (rows, self.hidden_size), bound, dtype)
        if self.bias:
            self.bias_ih = init.uniform(rng, (rows,), bound, dtype)
            self.bias_hh = init.uniform(rng, (rows,), bound, dtype)
        else:
            self.bias_ih = self.bias_hh = None

    def _arrays(self):
        return [self.weight_ih.data, self.weight_hh.data,
                None if self.bias_ih is None else self.bias_ih.data,
                None if self.bias_hh is None else self.bias_hh.data]

    def _check(self, x, states):
        """(N, I) input and (N, H) states (zeros for None), and whether x was batched."""
        name = type(self).__name__
        backend.backend_of(x)
        if x.ndim not in (1, 2):
            raise ValueError(f"{name} expected x of shape (N, {self.input_size}) or ({self.input_size},), "
                             f"got {tuple(x.shape)}")
        check_layer_input(name, x, self.weight_ih.data, self.input_size, "x is (N, input_size)")
        batched = x.ndim == 2
        x = x if batched else x[None, :]
        xp = backend.get_array_module(x)
        checked = []
        for state_name, s in states:
            if s is None:
                checked.append(xp.zeros((x.shape[0], self.hidden_size), dtype=x.dtype))
                continue
            expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            backend.backend_of(s)
            if tuple(s.shape) != expected:
                raise ValueError(f"{name} expected {state_name} of shape {expected}, got {tuple(s.shape)}")
            checked.append(s if batched else s[None, :])
        return x, checked, batched

    def _check_grad(self, name, grad, batched, like):
        """Check an upstream gradient against the (N, H) state ``like`` that forward produced; (N, H) view."""
        expected = tuple(like.shape) if batched else tuple(like.shape[1:])
        check_grad_shape(f"{type(self).__name__}.backward", name, grad, expected)
        return grad if batched else grad[None, :]

    def _accumulate(self, grads):
        for p, g in zip((self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh), grads):
            if p is not None:
                p.grad += g

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
