"""Gradient checking: compare hand-written backward passes with centred finite differences.

For a function ``out = f(x)`` and an upstream gradient ``dout`` (any array of
``out``'s shape), backward must return ``dx = d/dx sum(dout * f(x))``. The
numerical estimate perturbs each element of ``x`` by ``±eps``::

    dx[i] ≈ sum(dout * (f(x + eps e_i) - f(x - eps e_i))) / (2 eps)

whose error is O(eps²) plus rounding (docs/derivations.md, eq. (G1)). Agreement
is measured with a relative error whose floor is that noise (eq. (G2))::

    error = max_i |a_i - n_i| / max(|a_i| + |n_i|, noise / tol),   pass when error <= tol

so entries near zero are compared with the noise of the finite difference
(:func:`finite_difference_noise`) instead of failing on it. In float64 a
correct backward pass gives about 1e-9 or less; float32 cannot resolve this,
so :func:`check_module` works on a float64 copy. (:func:`rel_error`, the plain
relative error with the fixed floor 1e-8, is for comparing two computations
of the same thing, e.g. minigru and torch, where no finite difference is involved.)

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
from typing import NamedTuple

import numpy as np

from . import backend
from .nn.module import no_grad

__all__ = ["rel_error", "numerical_gradient", "finite_differences", "Differences", "finite_difference_noise",
           "compare_gradients", "check_gradient", "GradientComparison", "check_module", "GradcheckRow",
           "GradcheckReport", "NOISE_FACTOR", "KINK_RATIO"]


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


def _weighted_sum(out, douts):
    """sum(dout * out) over every output, as a 0-d array on the outputs' device (no host sync)."""
    total = 0.0
    for o, d in zip(_flatten(out), douts):
        total = total + (o * d).sum()
    return total


def numerical_gradient(f, x, dout, eps: float = 1e-5):
    """Centred-difference gradient of ``sum(dout * f(x))`` with respect to ``x`` (eq. G1).

    ``f`` is called as ``f(x)`` with ``x`` modified in place (every element in
    turn is moved by ``+eps`` and ``-eps`` and then restored); it may return an
    array or a (nested) tuple of arrays, in which case ``dout`` is a matching
    list/tuple. Returns an array of ``x``'s shape, dtype and backend.

    The two sums of every element stay on the device until the end (no host
    sync per element), and the difference is divided by the step actually
    taken, ``(x + eps) - (x - eps)`` in ``x``'s precision, not by ``2 eps``.
    """
    plus, minus, upper, lower = _perturbed_sums(f, x, _flatten(dout), eps)
    step = (upper - lower).astype(np.float64)
    return ((plus - minus) / step).reshape(x.shape).astype(x.dtype, copy=False)


def _perturbed_sums(f, x, douts, eps):
    """(plus, minus, upper, lower), flat: sum(dout * f) with each element of x set to upper = x + eps,
    then lower = x - eps (x is restored after each). The sums are kept in float64 whatever x's
    dtype, so that their difference does not lose the digits a float32 copy would."""
    xp = backend.get_array_module(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous x (it perturbs x.reshape(-1) in place)")
    flat = x.reshape(-1)
    original = flat.copy()
    upper, lower = original + eps, original - eps   # in x's precision: the steps actually taken
    plus = xp.empty(flat.shape, dtype=np.float64)
    minus = xp.empty(flat.shape, dtype=np.float64)
    for i in range(flat.size):
        flat[i] = upper[i]
        plus[i] = _weighted_sum(f(x), douts)
        flat[i] = lower[i]
        minus[i] = _weighted_sum(f(x), douts)
        flat[i] = original[i]
    return plus, minus, upper, lower


class Differences(NamedTuple):
    """Finite differences of ``L = sum(dout * f(x))`` for every element of x (NumPy arrays of x's shape):
    the centred one (eq. G1) and the two one-sided ones, (L(x + eps) - L(x)) / eps and (L(x) - L(x - eps)) / eps."""
    centred: np.ndarray
    forward: np.ndarray
    backward: np.ndarray


def finite_differences(f, x, dout, eps: float = 1e-5, base=None) -> Differences:
    """:class:`Differences` of ``sum(dout * f(x))``; ``base`` is that sum at x (computed when None).

    The one-sided slopes cost nothing more than the centred one (one extra evaluation at x):
    where they disagree by much more than smoothness allows, a kink (a ReLU at zero, a tie in a
    max pool) lies within eps of x, and the centred difference is not a derivative there.
    """
    douts = _flatten(dout)
    if base is None:
        base = _weighted_sum(f(x), douts)
    plus, minus, upper, lower = (backend.to_numpy(a).astype(np.float64) for a in _perturbed_sums(f, x, douts, eps))
    original = backend.to_numpy(x).astype(np.float64).reshape(-1)
    base = float(backend.to_numpy(base))
    shape = tuple(x.shape)
    return Differences(((plus - minus) / (upper - lower)).reshape(shape),
                       ((plus - base) / (upper - original)).reshape(shape),
                       ((base - minus) / (original - lower)).reshape(shape))


NOISE_FACTOR = 1000.0
"""Safety factor κ of the finite-difference noise bound (docs/derivations.md, eq. G2)."""


def finite_difference_noise(out, dout, eps: float = 1e-5, dtype=np.float64) -> float:
    """Bound ν on the error of one centred difference of ``sum(dout * out)`` (docs/derivations.md, eq. G2).

    ``ν = κ (u/ε + ε²/6) Λ`` with ``Λ = Σ |dout ⊙ out|`` the size of the checked sum,
    u the unit round-off of ``dtype`` and κ = :data:`NOISE_FACTOR`: u Λ/ε bounds the
    rounding of the two evaluations, ε²/6 Λ the truncation error for derivatives of
    the order of the function (inputs of order one), and κ covers what a forward pass
    adds to both (its depth, intermediates larger than the outputs).
    """
    u = float(np.finfo(dtype).eps) / 2
    size = 0.0
    for o, d in zip(_flatten(out), _flatten(dout)):
        size += float(backend.to_numpy(abs(o * d)).sum())
    return NOISE_FACTOR * (u / eps + eps * eps / 6) * size


@dataclass
class GradientComparison:
    """An analytic gradient against the numerical one (eq. G2, with its noise floor).

    ``error = max_i |a_i - n_i| / max(|a_i| + |n_i|, floor)`` with ``floor = noise / tol``:
    entries above the floor are compared relatively (``tol``), entries below it in absolute
    terms, against the finite-difference noise. ``passed`` is ``error <= tol``; ``worst`` the
    index of the largest error, ``numeric`` the numerical gradient (a NumPy array), ``kinks``
    how many entries were left out because a kink lies within eps of them (see
    :func:`compare_gradients`).
    """
    error: float
    floor: float
    noise: float
    tol: float
    worst: tuple
    numeric: np.ndarray
    kinks: int = 0

    @property
    def passed(self) -> bool:
        return bool(self.error <= self.tol)


KINK_RATIO = 10.0
"""An entry is at a kink when the analytic value is this many times closer to a one-sided slope than
the two slopes are to each other (docs/derivations.md, Gradient checking)."""


def compare_gradients(analytic, numeric, noise: float, tol: float = 1e-6) -> GradientComparison:
    """:class:`GradientComparison` of two gradients of one shape, given the noise bound ``noise`` (eq. G2).

    ``numeric`` is an array, or :class:`Differences`: then an entry that fails only because a
    kink lies within eps (the one-sided slopes differ, and the analytic value agrees with one
    of them KINK_RATIO times better than they agree with each other) is counted in ``kinks``
    and left out, since the centred difference is no derivative there. A wrong gradient at a
    smooth point differs from both slopes, which then differ by only about eps times the
    second derivative, and still fails. NaN or infinite entries count as an infinite error.
    """
    one_sided = None
    if isinstance(numeric, Differences):
        numeric, one_sided = numeric.centred, numeric
    a = backend.to_numpy(analytic).astype(np.float64)
    n = backend.to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"compare_gradients: shapes differ, {a.shape} vs {n.shape}")
    # tol = 0 asks for exact agreement: no allowance for noise either
    floor = noise / tol if tol > 0 else 0.0
    floor = max(floor, np.finfo(np.float64).tiny)
    if a.size == 0:
        return GradientComparison(0.0, floor, noise, tol, (), n)
    with np.errstate(invalid="ignore", over="ignore"):
        errors = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)
    errors = np.where(np.isfinite(errors), errors, np.inf)
    kinks = 0
    if one_sided is not None:
        spread = np.abs(one_sided.forward - one_sided.backward)
        nearest = np.minimum(np.abs(a - one_sided.forward), np.abs(a - one_sided.backward))
        at_kink = (errors > tol) & (KINK_RATIO * nearest <= spread)
        kinks = int(at_kink.sum())
        errors = np.where(at_kink, 0.0, errors)
    flat = int(np.argmax(errors))
    worst = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    return GradientComparison(float(errors.reshape(-1)[flat]), floor, noise, tol, worst, n, kinks)


def check_gradient(analytic, f, x, dout, eps: float = 1e-5, tol: float = 1e-6) -> GradientComparison:
    """Compare ``analytic`` with the finite differences of ``sum(dout * f(x))`` with respect to ``x`` (eq. G2).

    ``f``, ``x`` and ``dout`` as in :func:`numerical_gradient`; the noise bound comes from
    one extra evaluation ``f(x)`` (:func:`finite_difference_noise`), which also gives the
    one-sided slopes that tell a kink from a bug.
    """
    out = f(x)
    noise = finite_difference_noise(out, dout, eps, x.dtype)
    base = _weighted_sum(out, _flatten(dout))
    return compare_gradients(analytic, finite_differences(f, x, dout, eps, base=base), noise, tol)


@dataclass
class GradcheckRow:
    """One checked tensor: its name, shape, largest analytic entry, error (eq. G2), verdict."""
    name: str
    shape: tuple
    max_rel_error: float
    passed: bool
    max_abs_grad: float = float("nan")
    kinks: int = 0


class GradcheckReport(list):
    """A list of :class:`GradcheckRow`; ``passed`` is True when every row passed; ``str()`` is a table."""

    def __init__(self, rows, title: str = "", tol: float = 1e-6, floor: float | None = None):
        super().__init__(rows)
        self.title = title
        self.tol = tol
        self.floor = floor

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self), default=0.0)

    def __str__(self):
        width = max([len(r.name) for r in self] + [6])
        head = f"pass: error <= {self.tol:.0e}"
        lines = [f"{self.title}  ({head})" if self.title else head,
                 f"  {'tensor':<{width}}  {'shape':<16} {'max |grad|':>10} {'error':>9}  result"]
        for r in self:
            kinks = f" ({r.kinks} at a kink, left out)" if r.kinks else ""
            lines.append(f"  {r.name:<{width}}  {str(r.shape):<16} {r.max_abs_grad:>10.2e} {r.max_rel_error:>9.1e}  "
                         f"{'pass' if r.passed else 'FAIL'}{kinks}")
        if self.floor is not None:
            lines.append(f"  error = max |analytic - numerical| / max(|analytic| + |numerical|, floor), floor "
                         f"{self.floor:.1e} = noise {self.floor * self.tol:.1e} / tolerance")
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
        docs/derivations.md, Gradient checking) and pass threshold on the error of eq. G2.

    Returns a :class:`GradcheckReport` (one row per tensor), printed if ``verbose``.
    """
    model = copy.deepcopy(module).to(np.float64)
    xp = backend.get_array_module(*[p.data for p in model.parameters()],
                                  *[a for a in inputs if backend.is_array(a)])
    inputs = [xp.asarray(a, dtype=np.float64) if backend.is_array(a) and np.dtype(a.dtype).kind == "f" else a
              for a in inputs]
    rng_states = _rng_states(model)
    # (module, buffer name, saved copy): restored in place, as forward updates them in place
    saved_buffers = [(m, name, b.copy()) for m in model.modules() for name, b in m._buffers.items()
                     if backend.is_array(b)]

    def run():
        for gen, state in rng_states:
            gen.bit_generator.state = state          # the setter copies the values
        for m, name, saved in saved_buffers:
            current = m._buffers[name]
            if backend.is_array(current) and not isinstance(current, np.generic) and current.shape == saved.shape:
                current[...] = saved
            else:                                    # the forward pass replaced the buffer
                m._buffers[name] = saved.copy()
        return model(*inputs)

    def run_without_cache(_):
        with no_grad():                              # nothing to keep for a backward pass
            return run()

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
    noise = finite_difference_noise(out, douts, eps)   # one bound for every row: the same checked sum

    def add_row(name, analytic, array):
        result = compare_gradients(analytic, finite_differences(run_without_cache, array, douts, eps=eps), noise, tol)
        biggest = float(np.abs(backend.to_numpy(analytic)).max()) if array.size else 0.0
        rows.append(GradcheckRow(name, tuple(array.shape), result.error, result.passed, biggest, result.kinks))

    for (i, a), g in zip(float_inputs, grads):
        add_row(f"input[{i}]", g, a)
    if check_params:
        for name, p in model.named_parameters():
            add_row(name, p.grad.copy(), p.data)
    report = GradcheckReport(rows, title or type(module).__name__, tol, floor=noise / tol if tol > 0 else 0.0)
    if verbose:
        print(report)
    return report
