"""Vanilla (Elman) recurrent kernels with tanh or ReLU, one step and a whole sequence (docs/derivations.md §R).

PyTorch's ``nn.RNN`` computes, for every time step (eq. R1)::

    h' = φ(W_ih x + b_ih + W_hh h + b_hh),      φ = tanh or relu

Shapes: ``x`` (N, I) for one step, (T, N, I) for a sequence; ``h`` (N, H);
``weight_ih`` (H, I); ``weight_hh`` (H, H); ``bias_ih``, ``bias_hh`` (H,) or
None (a layer built with ``bias=False``). T steps, N sequences, I input
features, H hidden units.

Two tiers (see :mod:`minigru.functional`): :func:`rnn_step_forward` /
:func:`rnn_step_backward` are the readable step, eqs. R1-R4 line by line;
:func:`rnn_forward` / :func:`rnn_backward` are the fused sequence kernels,
written for speed with the machinery of :mod:`minigru.functional._recurrent`:
one GEMM for the input projections of all steps before the time loop, only
``W_hh h`` inside it, and one GEMM per weight gradient after the backward loop
(eq. R5). :mod:`minigru.functional.reference` runs the same sequence as a plain
loop over the step kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .._checks import check_grad_shape
from ..backend import get_array_module
from . import _workspace
from ._recurrent import (SequenceCache, check_recurrent_args, fresh_rows, gate_rows, open_cache, project_inputs,
                         stacked_gradients, to_columns)

__all__ = ["rnn_step_forward", "rnn_step_backward", "rnn_forward", "rnn_backward", "RNNStepCache", "RNNCache"]

NONLINEARITIES = ("tanh", "relu")


class RNNStepCache(NamedTuple):
    """What :func:`rnn_step_backward` needs from :func:`rnn_step_forward`: its inputs and h_next (N, H)."""
    x: object
    h_prev: object
    weight_ih: object
    weight_hh: object
    h_next: object
    nonlinearity: str
    has_bias: bool


@dataclass(kw_only=True, eq=False)
class RNNCache(SequenceCache):
    """The cache of :func:`rnn_forward`: x as (T*N, I); the states h_0..h_T as rows (T+1, N, H) and as
    pooled columns (T+1, H, N); the weights; whether there were biases; the nonlinearity."""
    x2d: object
    hs_rows: object
    hs_cols: object
    weight_ih: object
    weight_hh: object
    has_bias: bool
    nonlinearity: str


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
    has_bias = bias_ih is not None
    if not has_bias:  # bias=False behaves exactly like zero biases
        bias_ih = bias_hh = xp.zeros(hidden, dtype=x.dtype)
    ### HINT: a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh, then h_next = tanh(a) or max(a, 0)
    ### HINT: (docs/derivations.md eq. R1). Name the result h_next.
    ### BEGIN SOLUTION
    a = x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    h_next = xp.tanh(a) if nonlinearity == "tanh" else xp.maximum(a, 0)
    ### END SOLUTION
    return h_next, RNNStepCache(x, h_prev, weight_ih, weight_hh, h_next, nonlinearity, has_bias)


def rnn_step_backward(dh_next, cache):
    """Backward of :func:`rnn_step_forward` (eqs. R2-R4).

    dh_next: (N, H), the gradient of the loss with respect to h_next.
    Returns ``(dx, dh_prev, dweight_ih, dweight_hh, dbias_ih, dbias_hh)`` with
    shapes (N, I), (N, H), (H, I), (H, H), (H,), (H,).
    """
    check_grad_shape("rnn_step_backward", "dh_next", dh_next, cache.h_next.shape)
    x, h_prev, weight_ih, weight_hh = cache.x, cache.h_prev, cache.weight_ih, cache.weight_hh
    h_next, nonlinearity = cache.h_next, cache.nonlinearity
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


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
    """A vanilla RNN over a whole sequence, one layer and one direction (eq. R1 for t = 1..T).

    x: (T, N, I); h0: (N, H) or None (zeros); weight_ih: (H, I); weight_hh: (H, H);
    bias_ih, bias_hh: (H,) or None. Returns ``(hs, cache)``, hs: (T, N, H) the
    hidden state after every step (``hs[-1]`` is h_T).

    Fused for speed: ``hs`` is a view into the cache (do not modify it in place before backward)
    and the cache borrows pooled work arrays until :func:`rnn_backward` (or
    :func:`~minigru.functional.release_cache`) gives them back.
    """
    _check_nonlinearity(nonlinearity)
    xp = check_recurrent_args("rnn_forward", x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh, 1, 3)
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    x2d = x.reshape(steps * batch, features)
    bias = None if bias_ih is None else bias_ih + bias_hh
    # hs_cols[0] = h0^T and hs_cols[t + 1] = h_{t+1}^T; the projections are written where the
    # step's output will live, so each step only adds W_hh h_t and applies φ in place.
    hs_cols = _workspace.take(xp, (steps + 1, hidden, batch), x.dtype)
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
    cache = RNNCache(x2d=x2d, hs_rows=hs_rows, hs_cols=hs_cols, weight_ih=weight_ih, weight_hh=weight_hh,
                     has_bias=bias_ih is not None, nonlinearity=nonlinearity, work=(hs_cols,))
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
    saved = open_cache(cache, "rnn_backward")
    hs_cols, weight_hh = saved.hs_cols, saved.weight_hh
    xp = get_array_module(hs_cols, dhs, dh_last)
    steps, hidden, batch = hs_cols.shape[0] - 1, hs_cols.shape[1], hs_cols.shape[2]
    check_grad_shape("rnn_backward", "dhs", dhs, (steps, batch, hidden), optional=True)
    check_grad_shape("rnn_backward", "dh_last", dh_last, (batch, hidden), optional=True)
    dtype = hs_cols.dtype
    hs = hs_cols[1:]
    # φ'(a_t) for every step at once (eq. R2); the loop then only carries dh backwards.
    dphi = _workspace.take(xp, (steps, hidden, batch), dtype)
    if saved.nonlinearity == "tanh":
        xp.multiply(hs, hs, out=dphi)
        xp.subtract(1, dphi, out=dphi)
    else:
        xp.sign(hs, out=dphi)                # relu outputs are >= 0, so sign(h) = [h > 0]
    # da[t] = (∂L/∂a_t)^T; it starts as dhs in column layout and is completed in place by the loop
    da = _workspace.take(xp, (steps, hidden, batch), dtype)
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
    dx, dweight_ih, dweight_hh, dbias_ih, dbias_hh = stacked_gradients(da_rows, saved)
    _workspace.give_back(da, dphi, *saved.work)
    return dx, carry.T.copy(), dweight_ih, dweight_hh, dbias_ih, dbias_hh
