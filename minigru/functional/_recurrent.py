"""The machinery shared by the fused sequence kernels of RNN, GRU, LSTM (and, in part, ConvGRU).

The readable step kernels (``*_step_forward`` / ``*_step_backward``) need
none of this: they are a few lines of NumPy each, mirroring the equations.
The fused sequence kernels (``rnn_forward``, ``gru_forward``,
``lstm_forward``, ``convgru_forward`` and their backwards) are written for
speed, and they share:

* :func:`check_recurrent_args` — argument checks of every recurrent kernel;
* the column layout of the time loop: every per-step array is stored
  transposed, as (features, N), so that ``W_hh @ h`` (G*H, N) has each gate's
  block as contiguous rows and every elementwise update runs over contiguous
  memory (NumPy handles a strided view row by row, several times slower at
  these sizes). Inputs and outputs keep PyTorch's (T, N, features) layout; the
  conversions (:func:`to_columns`, :func:`fresh_rows`, :func:`gate_rows`) are a
  few bulk copies outside the loop;
* :func:`project_inputs` — the input-side pre-activations of all steps at once,
  before the loop; :func:`halve_gate_rows` for the one-tanh sigmoid;
  :func:`stacked_gradients` and :func:`bias_gradient` — the weight gradients of
  all steps at once, after the backward loop;
* the cache contract (:class:`SequenceCache`, :func:`open_cache`,
  :func:`release_cache`). The large internal buffers of a forward/backward pair
  (gate values, column-layout states, gate gradients) are borrowed from the
  per-thread pool of :mod:`minigru.functional._workspace` and given back when
  backward has consumed them, so that repeated training steps reuse memory
  instead of asking the operating system for fresh pages each time. Arrays
  that reach the caller (``dx``, the weight gradients, the final states) are
  always fresh; ``hs`` is a view into the cache. A cache is therefore consumed
  by its backward pass, and a second backward on it raises an error.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import numpy as np

from ..backend import get_array_module
from . import _workspace

__all__ = ["release_cache"]


@dataclass(kw_only=True, eq=False)
class SequenceCache:
    """Base of the fused sequence kernels' caches (one dataclass per kernel, fields named by what they hold).

    ``work``: the pooled arrays that backward gives back; ``consumed``: set when a backward (or
    :func:`release_cache`) has used the cache, whose fields are then emptied.
    """
    work: tuple = ()
    consumed: bool = False


def open_cache(cache: SequenceCache, kernel: str) -> SequenceCache:
    """The contents of a sequence kernel's cache, which is emptied: each forward allows one backward."""
    if not isinstance(cache, SequenceCache):
        raise TypeError(f"{kernel}: cache must be the cache its forward returned, got {type(cache).__name__}")
    if cache.consumed:
        raise RuntimeError(f"{kernel}: this cache was already used by a backward pass (its work arrays have "
                           "been recycled); run the forward again to get a fresh cache")
    contents = copy.copy(cache)
    _empty(cache)
    return contents


def release_cache(cache) -> None:
    """Give back the work arrays of a sequence kernel's cache that no backward will use (inference).

    Caches that borrow nothing (the step kernels', the reference kernels') need no release: ignored.
    """
    if isinstance(cache, SequenceCache) and not cache.consumed:
        _workspace.give_back(*cache.work)
        _empty(cache)


def _empty(cache):
    """Drop every reference the cache holds (so its arrays can be freed or reused) and mark it consumed."""
    for f in fields(cache):
        setattr(cache, f.name, None)
    cache.work = ()
    cache.consumed = True


def check_recurrent_args(kernel, x, states, weight_ih, weight_hh, bias_ih, bias_hh, num_gates, x_ndim):
    """Validate the arguments of a recurrent kernel; return the array module.

    ``kernel`` names the caller in messages; ``states`` is a dict such as
    ``{"h0": h0}`` whose values are (N, H) arrays or None; ``num_gates`` is
    1 (RNN), 3 (GRU) or 4 (LSTM); ``x_ndim`` is 2 for a step, 3 for a sequence.
    """
    arrays = [x, weight_ih, weight_hh, bias_ih, bias_hh, *states.values()]
    xp = get_array_module(*arrays)  # raises BackendMismatchError when NumPy and CuPy meet
    if x.ndim != x_ndim:
        layout = "(N, I)" if x_ndim == 2 else "(T, N, I)"
        raise ValueError(f"{kernel}: x must have shape {layout}, got {x.ndim}-D shape {tuple(x.shape)}")
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{kernel}: x must be a floating-point array, got dtype {x.dtype}")
    if weight_hh.ndim != 2 or weight_hh.shape[0] != num_gates * weight_hh.shape[1]:
        raise ValueError(f"{kernel}: weight_hh must have shape ({num_gates}*H, H), got {tuple(weight_hh.shape)}")
    hidden = weight_hh.shape[1]
    gh = num_gates * hidden
    if weight_ih.shape != (gh, x.shape[-1]):
        raise ValueError(f"{kernel}: weight_ih must have shape ({gh}, {x.shape[-1]}) for H={hidden} and "
                         f"x with {x.shape[-1]} features, got {tuple(weight_ih.shape)}")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if b is not None and b.shape != (gh,):
            raise ValueError(f"{kernel}: {name} must have shape ({gh},), got {tuple(b.shape)}")
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{kernel}: give both bias_ih and bias_hh, or neither (bias=False)")
    if x.shape[-2] == 0 or (x_ndim == 3 and x.shape[0] == 0):
        raise ValueError(f"{kernel}: x has an empty batch or time axis, shape {tuple(x.shape)}")
    batch = x.shape[-2]
    for name, s in states.items():
        if s is not None and s.shape != (batch, hidden):
            raise ValueError(f"{kernel}: {name} must have shape (N, H) = ({batch}, {hidden}), got {tuple(s.shape)}")
    for name, a in (("weight_ih", weight_ih), ("weight_hh", weight_hh), ("bias_ih", bias_ih),
                    ("bias_hh", bias_hh), *states.items()):
        if a is not None and a.dtype != x.dtype:
            raise TypeError(f"{kernel}: {name} has dtype {a.dtype} but x is {x.dtype}; cast x (x.astype(...)) or "
                            f"the layer (module.to({x.dtype.name!r})) so that no precision is mixed silently")
    return xp


def project_inputs(xp, x, weight_ih, bias, out):
    """Input-side pre-activations of every step, computed before the time loop (eqs. R5, G15).

    x: (T, N, I); weight_ih: (G, I); bias: (G,) or None; out: (T, G, N),
    filled with ``out[t] = W_ih x_t^T + bias``: step t's block, contiguous, in
    column layout. Returns ``out``.

    Two ways to the same numbers. ONE GEMM ``W_ih X^T`` gives (G, T*N), which
    one copy rearranges into (T, G, N) (about 2*G*N floats moved per step).
    A batched matmul writes each step's block in place but reads all of W_ih
    (G*I floats) once per step. So the single GEMM is used when I >= 2N, the
    batched form for narrow inputs; the batched form adds the bias by
    CS231n's bias trick (a row of ones under x^T, the bias as an extra
    column of W_ih), which saves a pass over ``out``.
    """
    steps, batch, features = x.shape
    gates_total = weight_ih.shape[0]
    if features >= 2 * batch:
        proj = _workspace.take(xp, (gates_total, steps * batch), x.dtype)
        xp.matmul(weight_ih, x.reshape(steps * batch, features).T, out=proj)
        rearranged = proj.reshape(gates_total, steps, batch).transpose(1, 0, 2)
        if bias is None:
            out[...] = rearranged
        else:   # the bias is added during the copy: one pass over the projections instead of two
            xp.add(rearranged, bias[:, None], out=out)
        _workspace.give_back(proj)
        return out
    rows = features + (bias is not None)
    x_cols = _workspace.take(xp, (steps, rows, batch), x.dtype)
    x_cols[:, :features] = x.transpose(0, 2, 1)
    weight = weight_ih
    if bias is not None:
        x_cols[:, features] = 1
        weight = xp.empty((gates_total, rows), dtype=x.dtype)
        weight[:, :features] = weight_ih
        weight[:, features] = bias
    xp.matmul(weight, x_cols, out=out)
    _workspace.give_back(x_cols)
    return out


def bias_gradient(da_rows):
    """Σ over all steps and sequences of (G, T*N) gate gradients, as a GEMV (much faster than sum)."""
    xp = get_array_module(da_rows)
    return da_rows @ xp.ones(da_rows.shape[1], dtype=da_rows.dtype)


def stacked_gradients(da_rows, saved):
    """The gradients that need no time loop, from the pre-activation gradients of all steps at once.

    da_rows: (G*H, T*N), column ``t*N + n`` holding step t of sequence n (see :func:`gate_rows`);
    ``saved`` is the opened forward cache (its ``x2d``, ``hs_rows``, ``weight_ih``, ``has_bias``).
    Returns ``(dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``: (T, N, I), (G*H, I), (G*H, H),
    (G*H,), (G*H,) (the biases None without them). Σ_t over all steps is one GEMM each (eqs. R5, M9):
    every step uses the same weights, so their per-step gradients add up. Both bias vectors get
    the same gradient: each adds to the same pre-activation (the GRU's b_hn under reset_after does
    not, so gru_backward does its own).
    """
    x2d, hs_rows = saved.x2d, saved.hs_rows
    steps, batch, hidden = hs_rows.shape[0] - 1, hs_rows.shape[1], hs_rows.shape[2]
    dweight_hh = da_rows @ hs_rows[:-1].reshape(steps * batch, hidden)
    dweight_ih = da_rows @ x2d
    dx = (da_rows.T @ saved.weight_ih).reshape(steps, batch, x2d.shape[1])
    dbias_ih = dbias_hh = None
    if saved.has_bias:
        dbias_ih = bias_gradient(da_rows)
        dbias_hh = dbias_ih.copy()
    return dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh


def halve_gate_rows(a, gates, hidden):
    """A copy of a stacked weight (G*H, K) or bias (G*H,) with the rows of the listed gates times 1/2.

    The sequence kernels evaluate σ(a) = (1 + tanh(a/2)) / 2, the stable sigmoid of eq. A3, with
    the 1/2 folded into the weights that produce a: one tanh call then serves the sigmoid gates and
    the tanh gates of a step together. Halving is exact in binary floating point, so the gate
    values are the same as sigmoid(a) computes.
    """
    if a is None:
        return None
    out = a.copy()
    for k in gates:
        out[k * hidden:(k + 1) * hidden] *= 0.5
    return out


def sigmoid_of_halves(xp, a_half):
    """In place: a/2 -> σ(a) = (1 + tanh(a/2)) / 2, the stable sigmoid of eq. A3 (see :func:`halve_gate_rows`)."""
    xp.tanh(a_half, out=a_half)
    a_half *= 0.5
    a_half += 0.5


def fresh_rows(cols):
    """(T, H, N) column-layout states -> a NEW contiguous (T, N, H) array.

    Always a copy: ``ascontiguousarray(cols.transpose(0, 2, 1))`` would return a view of the
    (pooled, later reused) work array when N or H is 1, and the caller's outputs would change.
    """
    xp = get_array_module(cols)
    rows = xp.empty((cols.shape[0], cols.shape[2], cols.shape[1]), dtype=cols.dtype)
    rows[...] = cols.transpose(0, 2, 1)
    return rows


def to_columns(a, out):
    """(T, N, H) -> (T, H, N), the loop's column layout, written into ``out``; returns ``out``."""
    out[...] = a.transpose(0, 2, 1)
    return out


def gate_rows(da, out):
    """Gate gradients of all steps, (T, G, N) -> (G, T*N) written into ``out`` (G*T*N elements):
    the left factor of the weight GEMMs (eq. R5). Returns the (G, T*N) view."""
    steps, gates_total, batch = da.shape
    rows = out.reshape(gates_total, steps, batch)
    rows[...] = da.transpose(1, 0, 2)
    return rows.reshape(gates_total, steps * batch)
