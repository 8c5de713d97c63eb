"""LSTM kernels: one readable step, and a fast whole-sequence layer (docs/derivations.md §M).

An LSTM has three gates, input ``i``, forget ``f`` and output ``o``, a
candidate ``g`` and a cell state ``c`` beside the hidden state ``h``
(PyTorch's convention, eqs. M1-M4)::

    [a_i, a_f, a_g, a_o] = W_ih x + b_ih + W_hh h + b_hh
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

Weights are stacked as in PyTorch, rows in the order i, f, g, o:
``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``/``bias_hh`` (4H,) or
None. Shapes: T steps, N sequences, I input features, H hidden units.

Two tiers (see :mod:`minigru.functional`): :func:`lstm_step_forward` /
:func:`lstm_step_backward` are the readable step, eqs. M1-M8 line by line;
:func:`lstm_forward` / :func:`lstm_backward` are the fused sequence kernels,
written for speed with the GRU's structure (the machinery of
:mod:`minigru.functional._recurrent`): one GEMM for all input projections, one
``W_hh h`` per step on column-layout (H, N) blocks, and one GEMM per weight
gradient after the backward loop (eq. M9). :mod:`minigru.functional.reference`
runs the same sequence as a plain loop over the step kernels.

Names: ``c`` (``c_prev``, ``c_next``, ``cs_cols``, ``c_n``) is always a cell
state; a kernel's cache is ``cache`` (``saved`` once a backward has opened it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .. import engine
from .._checks import check_grad_shape
from ..backend import get_array_module
from . import _workspace
from ._recurrent import (SequenceCache, check_recurrent_args, fresh_rows, gate_rows, halve_gate_rows, open_cache,
                         project_inputs, stacked_gradients, to_columns)
from .activations import sigmoid

__all__ = ["lstm_step_forward", "lstm_step_backward", "lstm_forward", "lstm_backward", "LSTMStepCache",
           "LSTMCache"]


class LSTMStepCache(NamedTuple):
    """What :func:`lstm_step_backward` needs from :func:`lstm_step_forward`: its inputs, the gates
    i, f, g, o and the new cell state c_next, each (N, H)."""
    x: object
    h_prev: object
    c_prev: object
    weight_ih: object
    weight_hh: object
    i: object
    f: object
    g: object
    o: object
    c_next: object
    has_bias: bool


@dataclass(kw_only=True, eq=False)
class LSTMCache(SequenceCache):
    """The cache of :func:`lstm_forward` (pooled arrays in column layout, T steps, N sequences, H units).

    gates (T, 4, H, N): i, f, g, o of every step; hs_cols, cs_cols (T+1, H, N): h_0..h_T and
    c_0..c_T; hs_rows (T+1, N, H); tanh_c (T, H, N): tanh(c_1..c_T); x2d (T*N, I): the input.
    """
    x2d: object
    hs_rows: object
    hs_cols: object
    cs_cols: object
    tanh_c: object
    gates: object
    weight_ih: object
    weight_hh: object
    has_bias: bool


def lstm_step_forward(x, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step (eqs. M1-M4), written for reading rather than speed.

    x: (N, I); h_prev, c_prev: (N, H); weight_ih: (4H, I); weight_hh: (4H, H);
    bias_ih, bias_hh: (4H,) or None.
    Returns ``((h_next, c_next), cache)`` with h_next, c_next: (N, H).
    """
    xp = check_recurrent_args("lstm_step_forward", x, {"h_prev": h_prev, "c_prev": c_prev}, weight_ih,
                              weight_hh, bias_ih, bias_hh, 4, 2)
    has_bias = bias_ih is not None
    if not has_bias:  # bias=False behaves exactly like zero biases
        bias_ih = bias_hh = xp.zeros(weight_ih.shape[0], dtype=x.dtype)
    hidden = weight_hh.shape[1]
    ### HINT: a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh, split into four (N, H) blocks i, f, g, o
    ### HINT: (eq. M1); i, f, o = sigmoid(...), g = tanh(...) (eq. M2); c_next = f * c_prev + i * g
    ### HINT: (eq. M3); h_next = o * tanh(c_next) (eq. M4). Name the results i, f, g, o, c_next, h_next.
    ### BEGIN SOLUTION
    a = x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    i = sigmoid(a[:, :hidden])
    f = sigmoid(a[:, hidden:2 * hidden])
    g = xp.tanh(a[:, 2 * hidden:3 * hidden])
    o = sigmoid(a[:, 3 * hidden:])
    c_next = f * c_prev + i * g
    h_next = o * xp.tanh(c_next)
    ### END SOLUTION
    cache = LSTMStepCache(x, h_prev, c_prev, weight_ih, weight_hh, i, f, g, o, c_next, has_bias)
    return (h_next, c_next), cache


def lstm_step_backward(dh_next, dc_next, cache):
    """Backward of :func:`lstm_step_forward` (eqs. M5-M8).

    dh_next, dc_next: (N, H), the gradients of the loss with respect to
    h_next and c_next (dc_next may be None: zero).
    Returns ``(dx, dh_prev, dc_prev, dweight_ih, dweight_hh, dbias_ih,
    dbias_hh)`` with shapes (N, I), (N, H), (N, H), (4H, I), (4H, H), (4H,),
    (4H,); the bias gradients are None when the forward step had no biases.
    """
    check_grad_shape("lstm_step_backward", "dh_next", dh_next, cache.h_prev.shape)
    check_grad_shape("lstm_step_backward", "dc_next", dc_next, cache.c_prev.shape, optional=True)
    x, h_prev, c_prev, weight_ih, weight_hh = cache.x, cache.h_prev, cache.c_prev, cache.weight_ih, cache.weight_hh
    i, f, g, o, c_next, has_bias = cache.i, cache.f, cache.g, cache.o, cache.c_next, cache.has_bias
    xp = get_array_module(dh_next, x)
    if dc_next is None:
        dc_next = xp.zeros_like(dh_next)
    ### HINT: through h_next = o * tanh(c_next): do and the part of dc that comes through h (eq. M5);
    ### HINT: dc = dc_next + that part (eq. M6); through c_next = f c_prev + i g: di, df, dg, dc_prev
    ### HINT: (eq. M7); through the nonlinearities to the pre-activations da = [da_i, da_f, da_g, da_o]
    ### HINT: and the products of eq. M8. Name the results dx, dh_prev, dc_prev, dweight_ih,
    ### HINT: dweight_hh, da.
    ### BEGIN SOLUTION
    tanh_c = xp.tanh(c_next)
    do = dh_next * tanh_c
    dc = dc_next + dh_next * o * (1 - tanh_c * tanh_c)
    di = dc * g
    df = dc * c_prev
    dg = dc * i
    dc_prev = dc * f
    da = xp.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
    dx = da @ weight_ih
    dh_prev = da @ weight_hh
    dweight_ih = da.T @ x
    dweight_hh = da.T @ h_prev
    ### END SOLUTION
    dbias_ih = da.sum(axis=0) if has_bias else None
    dbias_hh = dbias_ih.copy() if has_bias else None  # b_ih and b_hh enter a identically (eq. M1)
    return dx, dh_prev, dc_prev, dweight_ih, dweight_hh, dbias_ih, dbias_hh


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    """An LSTM over a whole sequence, one layer and one direction (eqs. M1-M4 for t = 1..T).

    x: (T, N, I); h0, c0: (N, H) or None (zeros); weight_ih: (4H, I);
    weight_hh: (4H, H); bias_ih, bias_hh: (4H,) or None.
    Returns ``((hs, c_n), cache)`` with hs: (T, N, H), the hidden state after
    every step (``hs[-1]`` is h_T), and c_n: (N, H), the last cell state.

    Fused for speed: ``hs`` is a view into the cache (do not modify it in place before backward)
    and the cache borrows pooled work arrays until :func:`lstm_backward` (or
    :func:`~minigru.functional.release_cache`) gives them back.
    """
    xp = check_recurrent_args("lstm_forward", x, {"h0": h0, "c0": c0}, weight_ih, weight_hh,
                              bias_ih, bias_hh, 4, 3)
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    bias = None if bias_ih is None else bias_ih + bias_hh   # both add to every gate (eq. M1)
    # i, f, o are sigmoids: their rows produce a/2 (see _recurrent.halve_gate_rows)
    sigmoid_gates = (0, 1, 3)
    # gates[t, k] (H, N): gate k (i, f, g, o) of step t; first the input-side pre-activation,
    # then, in place, the gate value that backward needs
    gates = _workspace.take(xp, (steps, 4, hidden, batch), x.dtype)
    project_inputs(xp, x, halve_gate_rows(weight_ih, sigmoid_gates, hidden),
                   halve_gate_rows(bias, sigmoid_gates, hidden), out=gates.reshape(steps, 4 * hidden, batch))
    hs_cols = _workspace.take(xp, (steps + 1, hidden, batch), x.dtype)   # h_t^T, t = 0..T
    cs_cols = _workspace.take(xp, (steps + 1, hidden, batch), x.dtype)   # c_t^T, t = 0..T
    tanh_c = _workspace.take(xp, (steps, hidden, batch), x.dtype)         # tanh(c_{t+1})^T, for backward
    hs_cols[0] = 0 if h0 is None else h0.T
    cs_cols[0] = 0 if c0 is None else c0.T
    weight_hh_halved = halve_gate_rows(weight_hh, sigmoid_gates, hidden)
    fused = engine.kernels_for(gates, hs_cols, cs_cols, tanh_c, weight_hh_halved)
    if fused is not None:   # the numba engine (minigru.engine): the same loop, one pass per step
        fused.lstm_forward_loop(gates, hs_cols, cs_cols, tanh_c, weight_hh_halved)
    else:
        _lstm_loop(xp, gates, hs_cols, cs_cols, tanh_c, weight_hh_halved)
    # hs_rows[1:] is the output; hs_rows[:-1] is every h_prev as one (T*N, H) block for dW_hh (eq. M9)
    hs_rows = fresh_rows(hs_cols)
    c_n = cs_cols[-1].T.copy()
    cache = LSTMCache(x2d=x.reshape(steps * batch, features), hs_rows=hs_rows, hs_cols=hs_cols, cs_cols=cs_cols,
                      tanh_c=tanh_c, gates=gates, weight_ih=weight_ih, weight_hh=weight_hh,
                      has_bias=bias_ih is not None, work=(gates, hs_cols, cs_cols, tanh_c))
    return (hs_rows[1:], c_n), cache


def _lstm_loop(xp, gates, hs_cols, cs_cols, tanh_c, weight_hh_halved):
    """The time loop of eqs. M1-M4: one GEMM and a few in-place updates per step.

    The rows of i, f and o arrive halved, so one tanh gives g and tanh(a/2) for the three sigmoids,
    which two affine updates turn into σ(a) = (1 + tanh(a/2)) / 2 (eq. A3).
    """
    _, _, hidden, batch = gates.shape
    gh = xp.empty((4 * hidden, batch), dtype=gates.dtype)
    tmp = xp.empty((hidden, batch), dtype=gates.dtype)
    gates2d = gates.reshape(gates.shape[0], 4 * hidden, batch)
    for t in range(gates.shape[0]):
        xp.matmul(weight_hh_halved, hs_cols[t], out=gh)
        a = gates2d[t]
        a += gh                                           # eq. M1
        xp.tanh(a, out=a)                                 # eq. M2: g, and tanh(a/2) for i, f, o
        i, f, g, o = gates[t]
        i_f = gates[t, :2]                                # i and f are adjacent
        i_f *= 0.5
        i_f += 0.5
        o *= 0.5
        o += 0.5
        c_next = cs_cols[t + 1]
        xp.multiply(f, cs_cols[t], out=c_next)            # eq. M3
        xp.multiply(i, g, out=tmp)
        c_next += tmp
        xp.tanh(c_next, out=tanh_c[t])                    # eq. M4
        xp.multiply(o, tanh_c[t], out=hs_cols[t + 1])


def lstm_backward(dhs, dh_last, dc_last, cache):
    """Backward of :func:`lstm_forward`: backpropagation through time (eqs. M5-M9).

    dhs: (T, N, H) or None, the gradient of the loss with respect to every
    output ``hs[t]``; dh_last, dc_last: (N, H) or None, extra gradients on h_T
    and c_T. Returns ``(dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih,
    dbias_hh)`` with shapes (T, N, I), (N, H), (N, H), (4H, I), (4H, H),
    (4H,), (4H,); the bias gradients are None for a kernel run without
    biases. The cache is consumed.
    """
    saved = open_cache(cache, "lstm_backward")
    gates, hs_cols, cs_cols, tanh_c = saved.gates, saved.hs_cols, saved.cs_cols, saved.tanh_c
    xp = get_array_module(hs_cols, dhs, dh_last, dc_last)
    steps, _, hidden, batch = gates.shape
    check_grad_shape("lstm_backward", "dhs", dhs, (steps, batch, hidden), optional=True)
    check_grad_shape("lstm_backward", "dh_last", dh_last, (batch, hidden), optional=True)
    check_grad_shape("lstm_backward", "dc_last", dc_last, (batch, hidden), optional=True)
    dtype = gates.dtype
    dh_all = _workspace.take(xp, (steps, hidden, batch), dtype)   # ∂L/∂h_{t+1}, completed by the loop
    if dhs is None:
        dh_all.fill(0)
    else:
        to_columns(dhs, out=dh_all)
    carry_h = xp.zeros((hidden, batch), dtype=dtype)        # ∂L/∂h_t from step t+1
    carry_c = xp.zeros((hidden, batch), dtype=dtype)        # ∂L/∂c_t from step t+1
    if dh_last is not None:
        carry_h[...] = dh_last.T
    if dc_last is not None:
        carry_c[...] = dc_last.T
    da = _workspace.take(xp, gates.shape, dtype)                  # ∂L/∂a of every gate and step
    fused = engine.kernels_for(carry_h, carry_c, dh_all, da, gates, cs_cols, tanh_c, saved.weight_hh)
    if fused is not None:
        fused.lstm_backward_loop(carry_h, carry_c, dh_all, da, gates, cs_cols, tanh_c, saved.weight_hh)
    else:
        _lstm_backward_loop(xp, carry_h, carry_c, dh_all, da, gates, cs_cols, tanh_c, saved.weight_hh)
    # eq. M9: the weight gradients of all steps at once, one GEMM each
    rows = _workspace.take(xp, (4 * hidden, steps * batch), dtype)
    da_rows = gate_rows(da.reshape(steps, 4 * hidden, batch), out=rows)
    dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh = stacked_gradients(da_rows, saved)
    _workspace.give_back(dh_all, da, rows, *saved.work)
    return (dx, carry_h.T.copy(), carry_c.T.copy(),
            dweight_ih, dweight_hh, dbias_ih, dbias_hh)


def _lstm_backward_loop(xp, carry_h, carry_c, dh_all, da, gates, cs_cols, tanh_c, weight_hh):
    """Steps T..1 of eqs. M5-M8 on (H, N) blocks; the carries end as ∂L/∂h_0^T and ∂L/∂c_0^T."""
    steps, _, hidden, batch = da.shape
    w_hh_t = weight_hh.T
    da2d = da.reshape(steps, 4 * hidden, batch)
    tmp = xp.empty((hidden, batch), dtype=da.dtype)
    slope_if = xp.empty((2, hidden, batch), dtype=da.dtype)
    dc = carry_c  # ∂L/∂c_{t+1} is built in place of the carry it extends (eq. M6)
    for t in range(steps - 1, -1, -1):
        i, f, g, o = gates[t]
        da_i, da_f, da_g, da_o = da[t]
        tc = tanh_c[t]
        dh = dh_all[t]
        dh += carry_h                                     # total ∂L/∂h_{t+1}
        xp.multiply(tc, tc, out=tmp)                      # M6: dc += dh ⊙ o ⊙ (1 − tanh²c)
        xp.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        xp.multiply(dh, tc, out=da_o)                     # M5, M8: dh ⊙ tanh(c) ⊙ o(1 − o)
        da_o *= o
        xp.subtract(1, o, out=tmp)
        da_o *= tmp
        xp.subtract(1, gates[t, :2], out=slope_if)        # M8: σ' = s(1 − s) for i and f together
        slope_if *= gates[t, :2]
        xp.multiply(dc, g, out=da_i)                      # M7: dc ⊙ g  and  dc ⊙ c_prev
        xp.multiply(dc, cs_cols[t], out=da_f)
        da[t, :2] *= slope_if
        xp.multiply(g, g, out=tmp)                        # M7, M8: dc ⊙ i ⊙ (1 − g²)
        xp.subtract(1, tmp, out=tmp)
        xp.multiply(dc, i, out=da_g)
        da_g *= tmp
        dc *= f                                           # M7: ∂L/∂c_t
        xp.matmul(w_hh_t, da2d[t], out=carry_h)           # M8: ∂L/∂h_t = W_hh^T da
