"""GRU kernels: one readable step, and a fast whole-sequence layer (docs/derivations.md §G).

A GRU has two gates, reset ``r`` and update ``z``, and a candidate state
``n``. Weights are stacked as in PyTorch, rows in the order r, z, n:
``weight_ih`` (3H, I) = [W_ir; W_iz; W_in], ``weight_hh`` (3H, H) =
[W_hr; W_hz; W_hn], ``bias_ih``/``bias_hh`` (3H,) or None (``bias=False``).

Two conventions, chosen by ``reset_after``:

* ``reset_after=True`` — PyTorch / cuDNN (eqs. G3, G4, G5, G7)::

      r  = σ(W_ir x + b_ir + W_hr h + b_hr)
      z  = σ(W_iz x + b_iz + W_hz h + b_hz)
      n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      reset applied AFTER the matmul
      h' = (1 − z) ⊙ n + z ⊙ h

* ``reset_after=False`` — Cho et al. 2014 (v3) (eqs. G3, G4, G6, G7)::

      n  = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      reset applied BEFORE the matmul

  with the same parameter shapes.

Shapes: T steps, N sequences, I input features, H hidden units.

Two tiers (see :mod:`minigru.functional`): :func:`gru_step_forward` / :func:`gru_step_backward`
are the readable step, eqs. G3-G14 line by line; :func:`gru_forward` / :func:`gru_backward` are
the fused sequence kernels (eqs. G15-G18, machinery in :mod:`minigru.functional._recurrent`): all
T input projections in ONE GEMM before the time loop; per step only ``W_hh h`` and in-place gate
arithmetic on transposed (H, N) buffers, so that the r, z, n blocks of ``W_hh h`` are contiguous
rows; in backward only ``dh`` is carried from step to step (eq. G17) and every weight gradient is
ONE GEMM after the loop (eq. G16). :mod:`minigru.functional.reference` loops over the step kernels.

Names: ``hidden_n`` is always ``W_hn h + b_hn`` (reset_after, eq. G5), ``rh`` always ``r ⊙ h``
(reset_before, eq. G6).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .. import engine
from .._checks import check_grad_shape
from ..backend import get_array_module
from . import _workspace
from ._recurrent import (SequenceCache, bias_gradient, check_recurrent_args, fresh_rows, gate_rows, halve_gate_rows,
                         open_cache, project_inputs, sigmoid_of_halves, to_columns)
from .activations import sigmoid

__all__ = ["gru_step_forward", "gru_step_backward", "gru_forward", "gru_backward", "GRUStepCache", "GRUCache"]


class GRUStepCache(NamedTuple):
    """What :func:`gru_step_backward` needs: the step's inputs, r, z, n (N, H) and hidden_n (N, H) or None."""
    x: object
    h_prev: object
    weight_ih: object
    weight_hh: object
    r: object
    z: object
    n: object
    hidden_n: object
    reset_after: bool
    has_bias: bool


@dataclass(kw_only=True, eq=False)
class GRUCache(SequenceCache):
    """The cache of :func:`gru_forward`: gates (T, 3, H, N) r, z, n; h_0..h_T as hs_cols (T+1, H, N) and
    hs_rows (T+1, N, H); hidden_n or rh (T, H, N), the other None; x2d (T*N, I)."""
    x2d: object
    hs_rows: object
    hs_cols: object
    gates: object
    hidden_n: object
    rh: object
    weight_ih: object
    weight_hh: object
    has_bias: bool
    reset_after: bool


def _split3(a):
    """The r, z, n thirds of ``a`` along its first axis (rows of a weight, entries of a bias)."""
    hidden = a.shape[0] // 3
    return a[:hidden], a[hidden:2 * hidden], a[2 * hidden:]


def gru_step_forward(x, h_prev, weight_ih, weight_hh, bias_ih, bias_hh, reset_after=True):
    """One GRU step (eqs. G3-G7), written for reading rather than speed.

    x: (N, I); h_prev: (N, H); weight_ih: (3H, I); weight_hh: (3H, H);
    bias_ih, bias_hh: (3H,) or None; reset_after: True for PyTorch's
    convention (eq. G5), False for Cho et al.'s (eq. G6).
    Returns ``(h_next, cache)`` with h_next: (N, H).
    """
    xp = check_recurrent_args("gru_step_forward", x, {"h_prev": h_prev}, weight_ih, weight_hh,
                              bias_ih, bias_hh, 3, 2)
    has_bias = bias_ih is not None
    if not has_bias:  # bias=False behaves exactly like zero biases
        bias_ih = bias_hh = xp.zeros(weight_ih.shape[0], dtype=x.dtype)
    w_ir, w_iz, w_in = _split3(weight_ih)
    w_hr, w_hz, w_hn = _split3(weight_hh)
    b_ir, b_iz, b_in = _split3(bias_ih)
    b_hr, b_hz, b_hn = _split3(bias_hh)
    ### HINT: r = sigmoid(x W_ir^T + b_ir + h_prev W_hr^T + b_hr) (eq. G3), z likewise (eq. G4).
    ### HINT: if reset_after: hidden_n = h_prev W_hn^T + b_hn and n = tanh(x W_in^T + b_in + r * hidden_n)
    ### HINT: (eq. G5); else n = tanh(x W_in^T + b_in + (r * h_prev) W_hn^T + b_hn) (eq. G6).
    ### HINT: h_next = (1 - z) * n + z * h_prev (eq. G7).
    ### HINT: Name the results r, z, hidden_n (reset_after only), n, h_next.
    ### BEGIN SOLUTION
    r = sigmoid(x @ w_ir.T + b_ir + h_prev @ w_hr.T + b_hr)
    z = sigmoid(x @ w_iz.T + b_iz + h_prev @ w_hz.T + b_hz)
    if reset_after:
        hidden_n = h_prev @ w_hn.T + b_hn
        n = xp.tanh(x @ w_in.T + b_in + r * hidden_n)
    else:
        n = xp.tanh(x @ w_in.T + b_in + (r * h_prev) @ w_hn.T + b_hn)
    h_next = (1 - z) * n + z * h_prev
    ### END SOLUTION
    cache = GRUStepCache(x, h_prev, weight_ih, weight_hh, r, z, n, hidden_n if reset_after else None,
                         reset_after, has_bias)
    return h_next, cache


def gru_step_backward(dh_next, cache):
    """Backward of :func:`gru_step_forward` (eqs. G8-G14), in the convention of the forward step
    (reset_after=True: eqs. G11-G13; False: eq. G14).

    dh_next: (N, H), the gradient of the loss with respect to h_next.
    Returns ``(dx, dh_prev, dweight_ih, dweight_hh, dbias_ih, dbias_hh)`` with
    shapes (N, I), (N, H), (3H, I), (3H, H), (3H,), (3H,); the bias gradients
    are None when the forward step had no biases.
    """
    check_grad_shape("gru_step_backward", "dh_next", dh_next, cache.h_prev.shape)
    x, h_prev, weight_ih, weight_hh = cache.x, cache.h_prev, cache.weight_ih, cache.weight_hh
    r, z, n, hidden_n = cache.r, cache.z, cache.n, cache.hidden_n
    reset_after, has_bias = cache.reset_after, cache.has_bias
    xp = get_array_module(dh_next, x)
    ### HINT: through h_next = (1-z) n + z h_prev: dn, dz and the direct part of dh_prev (eq. G8);
    ### HINT: through the nonlinearities: da_n = dn (1 - n²), da_z = dz z (1 - z) (eqs. G9, G10);
    ### HINT: reset_after: dr = da_n * hidden_n and the hidden-side n gradient is da_n * r (eq. G11);
    ### HINT: reset_before: d(r*h) = da_n W_hn, dr = d(r*h) * h_prev (eq. G14); da_r = dr r (1-r) (G12).
    ### HINT: Stack the pre-activation gradients [r, z, n] of the input side (da_x) and hidden side
    ### HINT: (da_h) and form the products of eq. G13. Name the results dx, dh_prev, dweight_ih,
    ### HINT: dweight_hh, da_x, da_h.
    ### BEGIN SOLUTION
    dn = dh_next * (1 - z)
    dz = dh_next * (h_prev - n)
    dh_prev = dh_next * z
    da_n = dn * (1 - n * n)
    da_z = dz * z * (1 - z)
    w_hr, w_hz, w_hn = _split3(weight_hh)
    if reset_after:
        dr = da_n * hidden_n
        da_r = dr * r * (1 - r)
        da_h = xp.concatenate([da_r, da_z, da_n * r], axis=1)
        dweight_hh = da_h.T @ h_prev
        dh_prev += da_h @ weight_hh
    else:
        d_rh = da_n @ w_hn
        dr = d_rh * h_prev
        da_r = dr * r * (1 - r)
        da_h = xp.concatenate([da_r, da_z, da_n], axis=1)
        dweight_hh = xp.concatenate([da_r.T @ h_prev, da_z.T @ h_prev, da_n.T @ (r * h_prev)], axis=0)
        dh_prev += d_rh * r + da_r @ w_hr + da_z @ w_hz
    da_x = xp.concatenate([da_r, da_z, da_n], axis=1)
    dx = da_x @ weight_ih
    dweight_ih = da_x.T @ x
    ### END SOLUTION
    dbias_ih = da_x.sum(axis=0) if has_bias else None
    dbias_hh = da_h.sum(axis=0) if has_bias else None
    return dx, dh_prev, dweight_ih, dweight_hh, dbias_ih, dbias_hh


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, reset_after=True):
    """A GRU over a whole sequence, one layer and one direction (eqs. G3-G7 for t = 1..T).

    x: (T, N, I); h0: (N, H) or None (zeros); weight_ih: (3H, I);
    weight_hh: (3H, H); bias_ih, bias_hh: (3H,) or None; reset_after: True
    for PyTorch's convention (eq. G5, reset after the matmul), False for Cho
    et al.'s (eq. G6, reset before). Returns ``(hs, cache)`` with hs:
    (T, N, H), the hidden state after every step (``hs[-1]`` is h_T).

    Fused for speed: ``hs`` is a view into the cache (do not modify it in place before backward)
    and the cache borrows pooled work arrays until :func:`gru_backward` (or
    :func:`~minigru.functional.release_cache`) gives them back.
    """
    xp = check_recurrent_args("gru_forward", x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh, 3, 3)
    steps, batch, features = x.shape
    hidden = weight_hh.shape[1]
    x2d = x.reshape(steps * batch, features)
    folded = None
    if bias_ih is not None:
        # Every hidden bias sits outside the reset gate except b_hn under reset_after (eq. G5),
        # so all the others are added once here instead of at every step.
        folded = bias_ih + bias_hh
        if reset_after:
            folded[2 * hidden:] = bias_ih[2 * hidden:]
    # gates[t, k] (H, N) holds gate k (r, z, n) of step t: first the input-side pre-activation
    # (eq. G15), then, overwritten in place, the gate value that backward needs.
    # r and z are sigmoids: their rows produce a/2 (see _recurrent.halve_gate_rows)
    gates = _workspace.take(xp, (steps, 3, hidden, batch), x.dtype)
    project_inputs(xp, x, halve_gate_rows(weight_ih, (0, 1), hidden), halve_gate_rows(folded, (0, 1), hidden),
                   out=gates.reshape(steps, 3 * hidden, batch))
    weight_hh_halved = halve_gate_rows(weight_hh, (0, 1), hidden)
    # hs_cols[0] = h0^T, hs_cols[t + 1] = h_{t+1}^T: the loop's states, in column layout
    hs_cols = _workspace.take(xp, (steps + 1, hidden, batch), x.dtype)
    hs_cols[0] = 0 if h0 is None else h0.T
    # reset_after keeps hidden_n[t] = W_hn h_t + b_hn (for dr, eq. G11); reset_before keeps
    # rh[t] = r ⊙ h_t (for dW_hn, eq. G14)
    kept = _workspace.take(xp, (steps, hidden, batch), x.dtype)
    if reset_after:
        hidden_n, rh = kept, None
        b_hn = None if bias_hh is None else bias_hh[2 * hidden:, None]
        fused = engine.kernels_for(gates, hs_cols, hidden_n, weight_hh_halved, b_hn)
        if fused is not None:   # the numba engine (minigru.engine): the same loop, one pass per step
            fused.gru_forward_loop_reset_after(gates, hs_cols, hidden_n, weight_hh_halved, b_hn)
        else:
            _gru_loop_reset_after(xp, gates, hs_cols, hidden_n, weight_hh_halved, b_hn)
    else:
        hidden_n, rh = None, kept
        _gru_loop_reset_before(xp, gates, hs_cols, rh, weight_hh_halved)
    # hs_rows[1:] is the output; hs_rows[:-1] is every h_prev as one (T*N, H) block for dW_hh (eq. G16)
    hs_rows = fresh_rows(hs_cols)
    cache = GRUCache(x2d=x2d, hs_rows=hs_rows, hs_cols=hs_cols, gates=gates, hidden_n=hidden_n, rh=rh,
                     weight_ih=weight_ih, weight_hh=weight_hh, has_bias=bias_ih is not None,
                     reset_after=reset_after, work=(gates, hs_cols, kept))
    return hs_rows[1:], cache


def _gru_loop_reset_after(xp, gates, hs_cols, hidden_n, weight_hh, b_hn):
    """The time loop of eqs. G3, G4, G5, G7: one GEMM and a few in-place updates per step.

    The r and z rows of the projections and of ``weight_hh`` arrive halved, so σ(a) is computed as
    (1 + tanh(a/2)) / 2 without the multiplication by 1/2 (eq. A3).
    """
    _, _, hidden, batch = gates.shape
    gh = xp.empty((3, hidden, batch), dtype=gates.dtype)  # W_hh h of the step: blocks r, z, n
    gh2d, gh_rz, gh_n = gh.reshape(3 * hidden, batch), gh[:2], gh[2]
    tmp = xp.empty((hidden, batch), dtype=gates.dtype)
    for h, h_next, g, hidden_n_t in zip(hs_cols[:-1], hs_cols[1:], gates, hidden_n):
        xp.matmul(weight_hh, h, out=gh2d)
        rz = g[:2]             # r and z are adjacent: one sigmoid for both (eqs. G3, G4)
        rz += gh_rz
        sigmoid_of_halves(xp, rz)
        r, z, n = g
        if b_hn is None:
            xp.copyto(hidden_n_t, gh_n)
        else:
            xp.add(gh_n, b_hn, out=hidden_n_t)
        xp.multiply(r, hidden_n_t, out=tmp)
        n += tmp
        xp.tanh(n, out=n)      # eq. G5
        xp.subtract(h, n, out=h_next)
        h_next *= z
        h_next += n            # eq. G7 as n + z ⊙ (h − n)


def _gru_loop_reset_before(xp, gates, hs_cols, rh, weight_hh):
    """The time loop of eqs. G3, G4, G6, G7: n needs r first, so W_hh is applied in two GEMMs.

    As in :func:`_gru_loop_reset_after`, the r and z rows arrive halved.
    """
    _, _, hidden, batch = gates.shape
    w_hrz, w_hn = weight_hh[:2 * hidden], weight_hh[2 * hidden:]
    gh = xp.empty((2, hidden, batch), dtype=gates.dtype)
    gh2d = gh.reshape(2 * hidden, batch)
    tmp = xp.empty((hidden, batch), dtype=gates.dtype)
    for h, h_next, g, rh_t in zip(hs_cols[:-1], hs_cols[1:], gates, rh):
        xp.matmul(w_hrz, h, out=gh2d)
        rz = g[:2]
        rz += gh
        sigmoid_of_halves(xp, rz)
        r, z, n = g
        xp.multiply(r, h, out=rh_t)
        xp.matmul(w_hn, rh_t, out=tmp)
        n += tmp
        xp.tanh(n, out=n)      # eq. G6
        xp.subtract(h, n, out=h_next)
        h_next *= z
        h_next += n            # eq. G7


def gru_backward(dhs, dh_last, cache):
    """Backward of :func:`gru_forward`: backpropagation through time (eqs. G8-G18).

    dhs: (T, N, H) or None, the gradient of the loss with respect to every
    output ``hs[t]``; dh_last: (N, H) or None, an extra gradient on h_T (from
    a loss on the final state). Returns ``(dx, dh0, dweight_ih, dweight_hh,
    dbias_ih, dbias_hh)`` with shapes (T, N, I), (N, H), (3H, I), (3H, H),
    (3H,), (3H,); the bias gradients are None for a kernel run without biases.
    Uses the convention the forward pass used (recorded in the cache: eqs.
    G11-G13 for reset_after=True, G14 for False). The cache is consumed.
    """
    saved = open_cache(cache, "gru_backward")
    x2d, hs_cols, gates, weight_hh = saved.x2d, saved.hs_cols, saved.gates, saved.weight_hh
    reset_after, has_bias = saved.reset_after, saved.has_bias
    xp = get_array_module(hs_cols, dhs, dh_last)
    steps, _, hidden, batch = gates.shape
    check_grad_shape("gru_backward", "dhs", dhs, (steps, batch, hidden), optional=True)
    check_grad_shape("gru_backward", "dh_last", dh_last, (batch, hidden), optional=True)
    dtype = gates.dtype
    # dh_all[t] = ∂L/∂h_{t+1}: starts as dhs in column layout, the loop adds what flows back (eq. G15)
    dh_all = _workspace.take(xp, (steps, hidden, batch), dtype)
    if dhs is None:
        dh_all.fill(0)
    else:
        to_columns(dhs, out=dh_all)
    carry = xp.zeros((hidden, batch), dtype=dtype)      # ∂L/∂h_t arriving from step t+1
    if dh_last is not None:
        carry[...] = dh_last.T
    # da[t, k] = ∂L/∂(pre-activation of gate k at step t) on the hidden side (what W_hh sees);
    # da_n_in[t] = ∂L/∂a_n on the input side, which differs under reset_after (eq. G11)
    da = _workspace.take(xp, gates.shape, dtype)
    da_n_in = _workspace.take(xp, (steps, hidden, batch), dtype)
    fused = engine.kernels_for(carry, dh_all, da, da_n_in, gates, saved.hidden_n, hs_cols, weight_hh) \
        if reset_after else None
    if fused is not None:
        fused.gru_backward_loop_reset_after(carry, dh_all, da, da_n_in, gates, saved.hidden_n, hs_cols, weight_hh)
    elif reset_after:
        _gru_backward_loop_reset_after(xp, carry, dh_all, da, da_n_in, gates, saved.hidden_n, hs_cols, weight_hh)
    else:
        _gru_backward_loop_reset_before(xp, carry, dh_all, da, gates, hs_cols, weight_hh)
    # eq. G16: the weight gradients of all steps at once, one GEMM each
    rows = _workspace.take(xp, (3 * hidden, steps * batch), dtype)
    da_rows = gate_rows(da.reshape(steps, 3 * hidden, batch), out=rows)  # (3H, T*N)
    h_prev_rows = saved.hs_rows[:-1].reshape(steps * batch, hidden)
    if reset_after:
        dweight_hh = da_rows @ h_prev_rows
        dbias_hh = bias_gradient(da_rows) if has_bias else None
        # the input side differs only in the n block (eq. G11)
        da_rows[2 * hidden:].reshape(hidden, steps, batch)[...] = da_n_in.transpose(1, 0, 2)
    else:
        # the n rows of W_hh multiply r ⊙ h, not h (eq. G14)
        rh_rows = gate_rows(saved.rh, out=da_n_in)                             # (H, T*N)
        dweight_hh = xp.empty_like(weight_hh)
        xp.matmul(da_rows[:2 * hidden], h_prev_rows, out=dweight_hh[:2 * hidden])
        xp.matmul(da_rows[2 * hidden:], rh_rows.T, out=dweight_hh[2 * hidden:])
        dbias_hh = None
    dweight_ih = da_rows @ x2d
    dx = (da_rows.T @ saved.weight_ih).reshape(steps, batch, x2d.shape[1])
    dbias_ih = bias_gradient(da_rows) if has_bias else None
    if has_bias and not reset_after:
        dbias_hh = dbias_ih.copy()  # every b_h* adds to its pre-activation just like b_i* (eq. G6)
    _workspace.give_back(dh_all, da, da_n_in, rows, *saved.work)
    return dx, carry.T.copy(), dweight_ih, dweight_hh, dbias_ih, dbias_hh


def _gru_backward_loop_reset_after(xp, carry, dh_all, da, da_n_in, gates, hidden_n, hs_cols, weight_hh):
    """Steps T..1 of eqs. G8-G13 (reset_after) on (H, N) blocks; ``carry`` ends as ∂L/∂h_0^T.

    The local derivatives are formed step by step, while the step's gate values are in cache;
    only ``dh`` really depends on the later steps (eq. G15).
    """
    steps, _, hidden, batch = da.shape
    w_hh_t = weight_hh.T
    da2d = da.reshape(steps, 3 * hidden, batch)
    dh_z = xp.empty((hidden, batch), dtype=da.dtype)
    tmp = xp.empty((hidden, batch), dtype=da.dtype)
    for t in range(steps - 1, -1, -1):
        r, z, n = gates[t]
        da_r, da_z, da_hidden_n = da[t]
        da_n = da_n_in[t]
        dh = dh_all[t]
        dh += carry                                         # G15: total ∂L/∂h_{t+1}
        # G8 with fewer passes: dh ⊙ z is both the direct path to h_t and, subtracted from dh,
        # dh ⊙ (1 − z), the factor that da_z and da_n share.
        xp.multiply(dh, z, out=dh_z)
        dh -= dh_z                                          # now dh ⊙ (1 − z); dh is not needed again
        xp.subtract(hs_cols[t], n, out=da_z)                # G10: dh ⊙ (h − n) ⊙ z(1 − z)
        da_z *= dh
        da_z *= z
        xp.multiply(n, n, out=tmp)                          # G9: dh ⊙ (1 − z) ⊙ (1 − n²)
        xp.subtract(1, tmp, out=tmp)
        xp.multiply(dh, tmp, out=da_n)
        xp.multiply(da_n, r, out=da_hidden_n)               # G11: what reaches W_hn h + b_hn
        xp.multiply(da_hidden_n, hidden_n[t], out=da_r)     # G11, G12: da_n ⊙ hidden_n ⊙ r(1 − r)
        xp.subtract(1, r, out=tmp)
        da_r *= tmp
        xp.matmul(w_hh_t, da2d[t], out=carry)               # G13: W_hh^T da + dh ⊙ z
        carry += dh_z


def _gru_backward_loop_reset_before(xp, carry, dh_all, da, gates, hs_cols, weight_hh):
    """Steps T..1 for reset_before (eqs. G8-G10, G12-G14): d(r ⊙ h) = W_hn^T da_n is a second GEMM."""
    steps, _, hidden, batch = da.shape
    w_hrz_t = weight_hh[:2 * hidden].T
    w_hn_t = weight_hh[2 * hidden:].T
    da2d = da.reshape(steps, 3 * hidden, batch)
    dh_z = xp.empty((hidden, batch), dtype=da.dtype)
    d_rh = xp.empty((hidden, batch), dtype=da.dtype)
    tmp = xp.empty((hidden, batch), dtype=da.dtype)
    for t in range(steps - 1, -1, -1):
        r, z, n = gates[t]
        da_r, da_z, da_n = da[t]
        h = hs_cols[t]
        dh = dh_all[t]
        dh += carry                                         # G15
        xp.multiply(dh, z, out=dh_z)                        # as in the reset_after loop:
        dh -= dh_z                                          # dh ⊙ (1 − z)
        xp.subtract(h, n, out=da_z)                         # G8, G10
        da_z *= dh
        da_z *= z
        xp.multiply(n, n, out=tmp)                          # G8, G9
        xp.subtract(1, tmp, out=tmp)
        xp.multiply(dh, tmp, out=da_n)
        xp.matmul(w_hn_t, da_n, out=d_rh)                   # G14: d(r ⊙ h)
        xp.multiply(d_rh, h, out=da_r)                      # G14, G12: d(r ⊙ h) ⊙ h ⊙ r(1 − r)
        da_r *= r
        xp.subtract(1, r, out=tmp)
        da_r *= tmp
        xp.matmul(w_hrz_t, da2d[t, :2 * hidden], out=carry)  # G14: [W_hr; W_hz]^T [da_r; da_z]
        carry += dh_z                                       # ... + dh ⊙ z + d(r ⊙ h) ⊙ r
        xp.multiply(d_rh, r, out=tmp)
        carry += tmp
