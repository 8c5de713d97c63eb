"""The LSTM's time loops with the gate arithmetic of a step fused into one kernel.

Same layout and equations as :func:`minigru.functional.lstm._lstm_loop` and
:func:`minigru.functional.lstm._lstm_backward_loop` (read those first): every per-step array is
(H, N), gate blocks stacked as (4, H, N) in the order i, f, g, o, and the rows of the sigmoid
gates i, f, o arrive halved, so σ(a) = 1/2 + 1/2·tanh(a/2) (eq. A3). Per step the GEMM stays
NumPy's (BLAS); the elementwise passes around it become one kernel, parallel over the H rows.
"""
from __future__ import annotations

import numba
import numpy as np

from .tanh import tanh

__all__ = ["lstm_forward_loop", "lstm_backward_loop"]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _forward_step(g, gh, c, c_next, tanh_c, h_next, half):
    """One step of eqs. M1-M4, in place. g (4, H, N): in, the input-side pre-activations (i, f, o
    halved); out, the gates i, f, g, o. gh (4, H, N): W_hh h (i, f, o halved); c, c_next,
    tanh_c, h_next (H, N)."""
    hidden, batch = c.shape
    for k in numba.prange(hidden):
        for j in range(batch):
            i = half * tanh(g[0, k, j] + gh[0, k, j]) + half           # M1, M2
            f = half * tanh(g[1, k, j] + gh[1, k, j]) + half
            gg = tanh(g[2, k, j] + gh[2, k, j])
            o = half * tanh(g[3, k, j] + gh[3, k, j]) + half
            g[0, k, j] = i
            g[1, k, j] = f
            g[2, k, j] = gg
            g[3, k, j] = o
            cn = f * c[k, j] + i * gg                                   # M3
            tc = tanh(cn)                                               # M4
            c_next[k, j] = cn
            tanh_c[k, j] = tc
            h_next[k, j] = o * tc


def lstm_forward_loop(gates, hs_cols, cs_cols, tanh_c, weight_hh_halved):
    """The forward time loop, as ``_lstm_loop`` (same arguments and shapes, without ``xp``)."""
    steps, _, hidden, batch = gates.shape
    gh = np.empty((4, hidden, batch), dtype=gates.dtype)
    gh2d = gh.reshape(4 * hidden, batch)
    half = gates.dtype.type(0.5)
    for t in range(steps):
        np.matmul(weight_hh_halved, hs_cols[t], out=gh2d)
        _forward_step(gates[t], gh, cs_cols[t], cs_cols[t + 1], tanh_c[t], hs_cols[t + 1], half)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _backward_step(dh_out, carry_h, carry_c, g, c_prev, tc, da, one):
    """The elementwise part of one backward step, eqs. M5-M8, in place.

    dh_out (H, N): ∂L/∂h_{t+1} from the output; carry_h (H, N): W_hh^T da of the later step;
    carry_c (H, N): in, ∂L/∂c_{t+1} from the later step; out, ∂L/∂c_t. g (4, H, N): i, f, g, o;
    c_prev (H, N): c_t; tc (H, N): tanh(c_{t+1}). Writes da (4, H, N), the pre-activation gradients.
    """
    hidden, batch = tc.shape
    for k in numba.prange(hidden):
        for j in range(batch):
            dh = dh_out[k, j] + carry_h[k, j]                           # total ∂L/∂h_{t+1}
            i = g[0, k, j]
            f = g[1, k, j]
            gg = g[2, k, j]
            o = g[3, k, j]
            t = tc[k, j]
            dc = carry_c[k, j] + (one - t * t) * o * dh                 # M6
            da[3, k, j] = dh * t * o * (one - o)                        # M5, M8
            da[0, k, j] = dc * gg * ((one - i) * i)                     # M7, M8
            da[1, k, j] = dc * c_prev[k, j] * ((one - f) * f)
            da[2, k, j] = dc * i * (one - gg * gg)
            carry_c[k, j] = dc * f                                      # M7: ∂L/∂c_t


def lstm_backward_loop(carry_h, carry_c, dh_all, da, gates, cs_cols, tanh_c, weight_hh):
    """Steps T..1, as ``_lstm_backward_loop`` (same arguments and shapes, without ``xp``); ``dh_all``
    is only read. The carries end as ∂L/∂h_0^T and ∂L/∂c_0^T."""
    steps, _, hidden, batch = da.shape
    w_hh_t = weight_hh.T
    da2d = da.reshape(steps, 4 * hidden, batch)
    one = da.dtype.type(1)
    for t in range(steps - 1, -1, -1):
        _backward_step(dh_all[t], carry_h, carry_c, gates[t], cs_cols[t], tanh_c[t], da[t], one)
        np.matmul(w_hh_t, da2d[t], out=carry_h)                         # M8: ∂L/∂h_t = W_hh^T da
