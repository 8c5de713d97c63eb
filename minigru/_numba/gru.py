"""The GRU's time loops (``reset_after=True``) with the gate arithmetic of a step fused into one kernel.

Same layout and equations as :func:`minigru.functional.gru._gru_loop_reset_after` and
:func:`minigru.functional.gru._gru_backward_loop_reset_after` (read those first): every per-step
array is (H, N), gate blocks stacked as (3, H, N) in the order r, z, n, and the r and z rows of
the pre-activations arrive halved, so σ(a) = 1/2 + 1/2·tanh(a/2) (eq. A3). Per step the GEMM
stays NumPy's (BLAS, threaded); the eleven elementwise passes around it become one kernel,
parallel over the H rows.
"""
from __future__ import annotations

import numba
import numpy as np

from .tanh import tanh

__all__ = ["gru_forward_loop_reset_after", "gru_backward_loop_reset_after"]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _forward_step(g, gh, b_hn, h, h_next, hidden_n, half):
    """One step of eqs. G3, G4, G5, G7, in place.

    g (3, H, N): in, the input-side pre-activations (r, z halved); out, the gates r, z, n.
    gh (3, H, N): W_hh h (r, z rows halved); b_hn (H,); h, h_next, hidden_n (H, N).
    """
    hidden, batch = h.shape
    for i in numba.prange(hidden):
        bias = b_hn[i]
        for j in range(batch):
            r = half * tanh(g[0, i, j] + gh[0, i, j]) + half          # G3
            z = half * tanh(g[1, i, j] + gh[1, i, j]) + half          # G4
            hn = gh[2, i, j] + bias                                   # W_hn h + b_hn, kept for G11
            n = tanh(g[2, i, j] + r * hn)                             # G5
            g[0, i, j] = r
            g[1, i, j] = z
            g[2, i, j] = n
            hidden_n[i, j] = hn
            h_next[i, j] = (h[i, j] - n) * z + n                      # G7 as n + z ⊙ (h − n)


def gru_forward_loop_reset_after(gates, hs_cols, hidden_n, weight_hh, b_hn):
    """The forward time loop. gates (T, 3, H, N); hs_cols (T+1, H, N) with hs_cols[0] = h0^T set;
    hidden_n (T, H, N) filled; weight_hh (3H, H), r and z rows halved; b_hn (H, 1) or None."""
    _, _, hidden, batch = gates.shape
    dtype = gates.dtype
    bias = np.zeros(hidden, dtype=dtype) if b_hn is None else np.ascontiguousarray(b_hn.reshape(hidden))
    gh = np.empty((3, hidden, batch), dtype=dtype)
    gh2d = gh.reshape(3 * hidden, batch)
    half = dtype.type(0.5)
    for t in range(gates.shape[0]):
        np.matmul(weight_hh, hs_cols[t], out=gh2d)
        _forward_step(gates[t], gh, bias, hs_cols[t], hs_cols[t + 1], hidden_n[t], half)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _backward_step(dh_out, carry, dh_z, g, h, hn, da, da_n_in, one):
    """The elementwise part of one backward step, eqs. G8-G12 (reset_after), in place.

    dh_out (H, N): ∂L/∂h_{t+1} from the output; carry (H, N): W_hh^T da of the later step;
    dh_z (H, N): in, dh ⊙ z of the later step; out, this step's. g (3, H, N): r, z, n;
    h (H, N): h_t; hn (H, N): W_hn h_t + b_hn. Writes da (3, H, N): the hidden-side
    pre-activation gradients (r, z, and what reaches W_hn h + b_hn), and da_n_in (H, N).
    """
    hidden, batch = h.shape
    for i in numba.prange(hidden):
        for j in range(batch):
            dh = dh_out[i, j] + (carry[i, j] + dh_z[i, j])            # G15: total ∂L/∂h_{t+1}
            r = g[0, i, j]
            z = g[1, i, j]
            n = g[2, i, j]
            direct = dh * z                                           # G8: the path to h_t
            dh1 = dh - direct                                         # dh ⊙ (1 − z)
            da[1, i, j] = (h[i, j] - n) * dh1 * z                     # G10
            da_n = dh1 * (one - n * n)                                # G9
            da_hn = da_n * r                                          # G11
            da[2, i, j] = da_hn
            da[0, i, j] = da_hn * hn[i, j] * (one - r)                # G11, G12
            da_n_in[i, j] = da_n
            dh_z[i, j] = direct


def gru_backward_loop_reset_after(carry, dh_all, da, da_n_in, gates, hidden_n, hs_cols, weight_hh):
    """Steps T..1 of eqs. G8-G13, as ``_gru_backward_loop_reset_after`` (same arguments and shapes);
    ``carry`` (H, N) ends as ∂L/∂h_0^T. ``dh_all`` is only read."""
    steps, _, hidden, batch = da.shape
    w_hh_t = weight_hh.T
    da2d = da.reshape(steps, 3 * hidden, batch)
    # the direct path dh ⊙ z is added to W_hh^T da inside the next kernel, not by a pass of its own
    dh_z = np.zeros((hidden, batch), dtype=da.dtype)
    one = da.dtype.type(1)
    for t in range(steps - 1, -1, -1):
        _backward_step(dh_all[t], carry, dh_z, gates[t], hs_cols[t], hidden_n[t], da[t], da_n_in[t], one)
        np.matmul(w_hh_t, da2d[t], out=carry)                        # G13
    carry += dh_z
