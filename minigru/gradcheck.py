"""Gradient checking: compare hand-written backward passes with centred finite differences.

For a function ``out = f(x)`` and an upstream gradient ``dout`` (any array of
``out``'s shape), backward must return ``dx = d/dx sum(dout * f(x))``. The
numerical estimate perturbs each element of ``x`` by ``±eps``::

    dx[i] ≈ sum(dout * (f(x + eps e_i) - f(x - eps e_i))) / (2 eps)

whose error is O(eps²) (docs/derivations.md, eq. (G1)). Agreement is measured
with CS231n's relative error ``max |a - b| / max(1e-8, |a| + |b|)``
(eq. (G2)). In float64 a correct backward pass gives about 1e-8 or less;
float32 cannot resolve this, so :func:`check_module` works on a float64 copy.

Example::

    >>> from minigru import nn, gradcheck
    >>> import numpy as np
    >>> report = gradcheck.check_module(nn.Linear(4, 3), np.random.randn(2, 4), verbose=False)
    >>> report.passed
    True
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from . import backend

__all__ = ["rel_error", "numerical_gradient", "check_module", "GradcheckRow", "GradcheckReport"]


def rel_error(a, b, floor: float = 1e-8) -> float:
    """Largest elementwise relative error ``|a - b| / max(floor, |a| + |b|)`` (CS231n's measure), as a float."""
    a = backend.to_numpy(a).astype(np.float64)
    b = backend.to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))))


def _flatten(out) -> list:
    """Arrays of a (possibly nested) tuple/list output, in order."""
    if isinstance(out, (tuple, list)):
        return [a for item in out for a in _flatten(item)]
    return [out]


def _weighted_sum(out, douts) -> float:
    total = 0.0
    for o, d in zip(_flatten(out), douts):
        total += float((o * d).sum())
    return total


def numerical_gradient(f, x, dout, eps: float = 1e-5):
    """Centred-difference gradient of ``sum(dout * f(x))`` with respect to ``x``.

    ``f`` is called as ``f(x)`` with ``x`` modified in place (every element in
    turn is moved by ``+eps`` and ``-eps`` and then restored); it may return an
    array or a (nested) tuple of arrays, in which case ``dout`` is a matching
    list/tuple. Returns an array of ``x``'s shape, dtype and backend.
    """
    xp = backend.get_array_module(x)
    douts = _flatten(dout)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous x (it perturbs x.reshape(-1) in place)")
    flat = x.reshape(-1)
    grad = xp.zeros(flat.shape, dtype=x.dtype)
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + eps
        plus = _weighted_sum(f(x), douts)
        flat[i] = old - eps
        minus = _weighted_sum(f(x), douts)
        flat[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


@dataclass
class GradcheckRow:
    """One checked tensor: its name, the max relative error, and whether it is within ``tol``."""
    name: str
    shape: tuple
    max_rel_error: float
    passed: bool


class GradcheckReport(list):
    """A list of :class:`GradcheckRow`; ``passed`` is True when every row passed; ``str()`` is a table."""

    def __init__(self, rows, title: str = "", tol: float = 1e-6):
        super().__init__(rows)
        self.title = title
        self.tol = tol

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self), default=0.0)

    def __str__(self):
        width = max([len(r.name) for r in self] + [6])
        lines = [f"{self.title}  (tolerance {self.tol:.0e})" if self.title else f"tolerance {self.tol:.0e}",
                 f"  {'tensor':<{width}}  {'shape':<16} {'max rel error':>13}  result"]
        for r in self:
            lines.append(f"  {r.name:<{width}}  {str(r.shape):<16} {r.max_rel_error:>13.2e}  "
                         f"{'pass' if r.passed else 'FAIL'}")
        return "\n".join(lines)


def _rng_states(module):
    """Generators held by the module tree (e.g. Dropout's), to replay the same random draws."""
    found = []
    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, np.random.Generator):
                found.append((v, copy.deepcopy(v.bit_generator.state)))
    return found


def check_module(module, *inputs, douts=None, seed=0, eps: float = 1e-5, tol: float = 1e-6,
                 check_params: bool = True, verbose: bool = True, title: str | None = None) -> GradcheckReport:
    """Gradient-check a layer or model: every floating input and every parameter.

    Works on a float64 deep copy of ``module`` (the original is untouched),
    with its current ``training`` mode. Random draws inside the module (e.g.
    dropout masks) are replayed identically for every evaluation, and buffers
    (e.g. batch-norm running statistics) are restored before each one.

    Parameters
    ----------
    module : Module whose ``forward(*inputs)`` returns an array or a (nested)
        tuple of arrays, and whose ``backward(*douts)`` returns the gradients of
        its floating inputs (one array, or a tuple in input order).
    inputs : arrays (floating ones are checked; integer ones, like class
        targets, are passed through) or None (e.g. ``h0=None``).
    douts : upstream gradients, one per output array; random normal if None.
    seed : seed of the random upstream gradients.
    eps, tol : finite-difference step (1e-5 balances truncation and rounding error in float64,
        docs/derivations.md, Gradient checking) and pass threshold on the max relative error.

    Returns a :class:`GradcheckReport` (one row per tensor), printed if ``verbose``.
    """
    model = copy.deepcopy(module).to(np.float64)
    xp = backend.get_array_module(*[p.data for p in model.parameters()],
                                  *[a for a in inputs if backend.is_array(a)])
    inputs = [xp.asarray(a, dtype=np.float64) if backend.is_array(a) and np.dtype(a.dtype).kind == "f" else a
              for a in inputs]
    rng_states = _rng_states(model)
    saved_buffers = {name: b.copy() for name, b in model.named_buffers()}

    def run():
        for gen, state in rng_states:
            gen.bit_generator.state = copy.deepcopy(state)
        if saved_buffers:
            model.load_state_dict({**model.state_dict(), **saved_buffers})
        return model(*inputs)

    out = run()
    outs = _flatten(out)
    if douts is None:
        rng = np.random.default_rng(seed)
        douts = [backend.random_normal(rng, np.shape(o), dtype=np.float64, like=o) if np.ndim(o) else
                 float(rng.normal()) for o in outs]
    else:
        douts = _flatten(douts)
    model.zero_grad()
    grads = model.backward(*douts)
    float_inputs = [(i, a) for i, a in enumerate(inputs) if backend.is_array(a) and np.dtype(a.dtype).kind == "f"]
    # backward returns the input gradients by position (dx, dh0, ...); a layer may return
    # more than it was given inputs for (GRU returns dh0 even for h0=None) or one array.
    if not isinstance(grads, tuple):
        grads = (grads,)
    if float_inputs and float_inputs[-1][0] >= len(grads):
        raise ValueError(f"{type(module).__name__}.backward returned {len(grads)} input gradient(s), but "
                         f"input {float_inputs[-1][0]} is a floating array that needs one")
    grads = [grads[i] for i, _ in float_inputs]

    rows = []

    def add_row(name, analytic, array):
        numeric = numerical_gradient(lambda _: run(), array, douts, eps=eps)
        err = rel_error(analytic, numeric)
        rows.append(GradcheckRow(name, tuple(array.shape), err, bool(err <= tol)))

    for (i, a), g in zip(float_inputs, grads):
        add_row(f"input[{i}]", g, a)
    if check_params:
        for name, p in model.named_parameters():
            add_row(name, p.grad.copy(), p.data)
    report = GradcheckReport(rows, title or type(module).__name__, tol)
    if verbose:
        print(report)
    return report
