"""Vanilla (Elman) recurrent kernels with tanh or ReLU, one step and a whole sequence (docs/derivations.md §R).

PyTorch's ``nn.RNN`` computes, for every time step (eq. R1)::

    h' = φ(W_ih x + b_ih + W_hh h + b_hh),      φ = tanh or relu

Shapes: ``x`` (N, I) for one step, (T, N, I) for a sequence; ``h`` (N, H);
``weight_ih`` (H, I); ``weight_hh`` (H, H); ``bias_ih``, ``bias_hh`` (H,) or
None (a layer built with ``bias=False``). T steps, N sequences, I input
features, H hidden units.

The sequence kernels have the structure shared by GRU and LSTM (see
:mod:`minigru.functional.gru`): one GEMM for the input projections of all
steps before the time loop, only ``W_hh h`` inside it, and one GEMM per
weight gradient after the backward loop (eq. R5).

Layout inside the time loop: every per-step array is stored transposed, as
(features, N) — "columns" — so that ``W_hh @ h`` (G*H, N) has each gate's
block as contiguous rows and every elementwise update runs over contiguous
memory (NumPy handles a strided view row by row, several times slower at
these sizes). Inputs and outputs keep PyTorch's (T, N, features) layout; the
conversions are a few bulk copies outside the loop.

Work arrays: the large internal buffers of a forward/backward pair (gate
values, column-layout states, gate gradients) are taken from the
per-thread pool of :mod:`minigru.functional._workspace` (NumPy only; the
convolutions use it too) and given back
when backward has consumed them, so that repeated training steps reuse
memory instead of asking the operating system for fresh pages each time (a
page fault per 4 KiB costs more than the arithmetic done on it).
:func:`clear_work_pool` empties it. Arrays that reach the caller (``hs``,
``dx``, the weight gradients) are always fresh. A cache is therefore
consumed by its backward pass; a second backward on it raises an error.

This module also holds the helpers that the GRU and LSTM kernels share:
:func:`check_recurrent_args`, :func:`project_inputs`, :func:`to_columns`, :func:`fresh_rows`,
:func:`gate_rows`, :func:`bias_gradient`, :func:`take_work` / :func:`give_back_work`,
:func:`open_cache` and :func:`release_cache`.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from . import _workspace

__all__ = ["rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward", "release_cache",
           "clear_work_pool"]

NONLINEARITIES = ("tanh", "relu")


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
        raise TypeError(f"{kernel}: x must be floating point, got dtype {x.dtype}")
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
            raise TypeError(f"{kernel}: {name} has dtype {a.dtype} but x has {x.dtype}; cast one of them "
                            "(module.to(dtype) or x.astype(...)) so that no precision is mixed silently")
    return xp


def take_work(xp, shape, dtype):
    """An uninitialised work array to borrow until :func:`give_back_work`: a recycled one of this
    shape and dtype if any, else a new one (see :mod:`minigru.functional._workspace`)."""
    return _workspace.take(xp, shape, dtype)


def give_back_work(*arrays):
    """Return work arrays to the pool. Only for arrays that nothing outside the kernels references."""
    _workspace.give_back(*arrays)


def clear_work_pool() -> None:
    """Drop the recycled work arrays of this thread, the recurrent kernels' and the convolutions'
    (they are kept for reuse by later calls)."""
    _workspace.clear()


def open_cache(cache, kernel):
    """The contents of a sequence kernel's cache, which is emptied: each forward allows one backward.

    A cache is a dict; its ``"work"`` entry lists the pooled arrays that backward gives back.
    """
    if not cache:
        raise RuntimeError(f"{kernel}: this cache was already used by a backward pass (its work arrays have "
                           "been recycled); run the forward again to get a fresh cache")
    contents = dict(cache)
    cache.clear()
    return contents


def release_cache(cache) -> None:
    """Give back the work arrays of a sequence kernel's cache that no backward will use (inference)."""
    if cache:
        give_back_work(*cache["work"])
        cache.clear()


def _check_nonlinearity(nonlinearity):
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_step_forward(x, h_prev, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
    """One step of a vanilla RNN: ``h_next = φ(x W_ih^T + b_ih + h_prev W_hh^T + b_hh)`` (eq. R1).

    x: (N, I); h_prev: (N, H); weight_ih: (H, I); weight_hh: (H, H);
    bias_ih, bias_hh: (H,) or None; nonlinearity: 'tanh' or 'relu'.
    Returns ``(h_next, cache)`` with h_next: (N, H).
    """
    _check_nonlinearity(nonlinearity)
    xp = check_recurrent_args("rnn_step_forward", x, {"h_prev": h_prev}, weight_ih, weight_hh,
                              bias_ih, bias_hh, 1, 2)
    hidden = weight_hh.shape[1]
    if bias_ih is None:  # bias=False behaves exactly like zero biases
        bias_ih = bias_hh = xp.zeros(hidden, dtype=x.dtype)
    ### HINT: a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh, then h_next = tanh(a) or max(a, 0)
    ### HINT: (docs/derivations.md eq. R1). Name the result h_next.
    ### BEGIN SOLUTION
    a = x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    h_next = xp.tanh(a) if nonlinearity == "tanh" else xp.maximum(a, 0)
    ### END SOLUTION
    return h_next, (x, h_prev, weight_ih, weight_hh, h_next, nonlinearity)


def rnn_step_backward(dh_next, cache):
    """Backward of :func:`rnn_step_forward` (eqs. R2-R4).

    dh_next: (N, H), the gradient of the loss with respect to h_next.
    Returns ``(dx, dh_prev, dweight_ih, dweight_hh, dbias_ih, dbias_hh)`` with
    shapes (N, I), (N, H), (H, I), (H, H), (H,), (H,).
    """
    x, h_prev, weight_ih, weight_hh, h_next, nonlinearity = cache
    ### HINT: da = dh_next * φ'(a), where φ'(a) = 1 - h_next² (tanh) or [h_next > 0] (relu) (eq. R2);
    ### HINT: then the products of eqs. R3-R4. Name the results dx, dh_prev, dweight_ih, dweight_hh, dbias.
    ### BEGIN SOLUTION
    if nonlinearity == "tanh":
        da = dh_next * (1 - h_next * h_next)
    else:
        da = dh_next * (h_next > 0)
    dx = da @ weight_ih
    dh_prev = da @ weight_hh
    dweight_ih = da.T @ x
    dweight_hh = da.T @ h_prev
    dbias = da.sum(axis=0)
    ### END SOLUTION
    # b_ih and b_hh enter the pre-activation identically, so their gradients are equal
    return dx, dh_prev, dweight_ih, dweight_hh, dbias, dbias.copy()


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
        proj = take_work(xp, (gates_total, steps * batch), x.dtype)
        xp.matmul(weight_ih, x.reshape(steps * batch, features).T, out=proj)
        rearranged = proj.reshape(gates_total, steps, batch).transpose(1, 0, 2)
        if bias is None:
            out[...] = rearranged
        else:   # the bias is added during the copy: one pass over the projections instead of two
            xp.add(rearranged, bias[:, None], out=out)
        give_back_work(proj)
        return out
    rows = features + (bias is not None)
    x_cols = take_work(xp, (steps, rows, batch), x.dtype)
    x_cols[:, :features] = x.transpose(0, 2, 1)
    weight = weight_ih
    if bias is not None:
        x_cols[:, features] = 1
        weight = xp.empty((gates_total, rows), dtype=x.dtype)
        weight[:, :features] = weight_ih
        weight[:, features] = bias
    xp.matmul(weight, x_cols, out=out)
    give_back_work(x_cols)
    return out


def bias_gradient(da_rows):
    """Σ over all steps and sequences of (G, T*N) gate gradients, as a GEMV (much faster than sum)."""
    xp = get_array_module(da_rows)
    return da_rows @ xp.ones(da_rows.shape[1], dtype=da_rows.dtype)


def stacked_gradients(da_rows, cache):
    """The gradients that need no time loop, from the pre-activation gradients of all steps at once.

    da_rows: (G*H, T*N), column ``t*N + n`` holding step t of sequence n (see :func:`gate_rows`);
    ``cache`` is the opened forward cache (``x2d``, ``hs_rows``, ``weight_ih``, ``has_bias``).
    Returns ``(dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``: (T, N, I), (G*H, I), (G*H, H),
    (G*H,), (G*H,) (the biases None without them). Σ_t over all steps is one GEMM each (eqs. R5, M9):
    every step uses the same weights, so their per-step gradients add up. Both bias vectors get
    the same gradient: each adds to the same pre-activation (the GRU's b_hn under reset_after does
    not, so gru_backward does its own).
    """
    x2d, hs_rows = cache["x2d"], cache["hs_rows"]
    steps, batch, hidden = hs_rows.shape[0] - 1, hs_rows.shape[1], hs_rows.shape[2]
    dweight_hh = da_rows @ hs_rows[:-1].reshape(steps * batch, hidden)
    dweight_ih = da_rows @ x2d
    dx = (da_rows.T @ cache["weight_ih"]).reshape(steps, batch, x2d.shape[1])
    dbias_ih = dbias_hh = None
    if cache["has_bias"]:
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


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
    """A vanilla RNN over a whole sequence, one layer and one direction (eq. R1 for t = 1..T).

    x: (T, N, I); h0: (N, H) or None (zeros); weight_ih: (H, I); weight_hh: (H, H);
    bias_ih, bias_hh: (H,) or None. Returns ``(hs, cache)``, hs: (T, N, H) the
    hidden state after every step (``hs[-1]`` is h_T).

    ``hs`` is a view into the cache: do not modify it in place before backward.
    """
    _check_nonlinearity(nonlinearity)
    xp = check_recurrent_args("rnn_forward", x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh, 1, 3)
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    x2d = x.reshape(steps * batch, features)
    bias = None if bias_ih is None else bias_ih + bias_hh
    # hs_cols[0] = h0^T and hs_cols[t + 1] = h_{t+1}^T; the projections are written where the
    # step's output will live, so each step only adds W_hh h_t and applies φ in place.
    hs_cols = take_work(xp, (steps + 1, hidden, batch), x.dtype)
    hs_cols[0] = 0 if h0 is None else h0.T
    project_inputs(xp, x, weight_ih, bias, out=hs_cols[1:])
    recurrent = xp.empty((hidden, batch), dtype=x.dtype)
    for t in range(steps):
        h_next = hs_cols[t + 1]
        xp.matmul(weight_hh, hs_cols[t], out=recurrent)
        h_next += recurrent
        if nonlinearity == "tanh":
            xp.tanh(h_next, out=h_next)
        else:
            xp.maximum(h_next, 0, out=h_next)
    # hs_rows[1:] is the output; hs_rows[:-1] is every h_prev as one (T*N, H) block for dW_hh (eq. R5)
    hs_rows = fresh_rows(hs_cols)
    cache = {"x2d": x2d, "hs_rows": hs_rows, "hs_cols": hs_cols, "weight_ih": weight_ih,
             "weight_hh": weight_hh, "has_bias": bias_ih is not None, "nonlinearity": nonlinearity,
             "work": (hs_cols,)}
    return hs_rows[1:], cache


def rnn_backward(dhs, dh_last, cache):
    """Backward of :func:`rnn_forward`: backpropagation through time (eqs. R2-R5).

    dhs: (T, N, H) or None, the gradient of the loss with respect to every
    output ``hs[t]``; dh_last: (N, H) or None, an extra gradient on h_T (from
    a loss on the final state). Returns ``(dx, dh0, dweight_ih, dweight_hh,
    dbias_ih, dbias_hh)`` with shapes (T, N, I), (N, H), (H, I), (H, H),
    (H,), (H,); the bias gradients are None for a kernel run without biases.
    The cache is consumed.
    """
    c = open_cache(cache, "rnn_backward")
    hs_cols, weight_hh = c["hs_cols"], c["weight_hh"]
    xp = get_array_module(hs_cols, dhs, dh_last)
    steps, hidden, batch = hs_cols.shape[0] - 1, hs_cols.shape[1], hs_cols.shape[2]
    dtype = hs_cols.dtype
    hs = hs_cols[1:]
    # φ'(a_t) for every step at once (eq. R2); the loop then only carries dh backwards.
    dphi = take_work(xp, (steps, hidden, batch), dtype)
    if c["nonlinearity"] == "tanh":
        xp.multiply(hs, hs, out=dphi)
        xp.subtract(1, dphi, out=dphi)
    else:
        xp.sign(hs, out=dphi)                # relu outputs are >= 0, so sign(h) = [h > 0]
    # da[t] = (∂L/∂a_t)^T; it starts as dhs in column layout and is completed in place by the loop
    da = take_work(xp, (steps, hidden, batch), dtype)
    if dhs is None:
        da.fill(0)
    else:
        to_columns(dhs, out=da)
    carry = xp.zeros((hidden, batch), dtype=dtype)
    if dh_last is not None:
        carry[...] = dh_last.T
    w_hh_t = weight_hh.T
    for t in range(steps - 1, -1, -1):
        da[t] += carry
        da[t] *= dphi[t]
        xp.matmul(w_hh_t, da[t], out=carry)  # eq. R3: ∂L/∂h_{t-1} through W_hh
    da_rows = gate_rows(da, out=dphi)        # (H, T*N); dphi is no longer needed
    # eq. R5: Σ_t da_t^T h_{t-1} is one GEMM over the stacked steps
    dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh = stacked_gradients(da_rows, c)
    give_back_work(da, dphi, *c["work"])
    return dx, carry.T.copy(), dweight_ih, dweight_hh, dbias_ih, dbias_hh
