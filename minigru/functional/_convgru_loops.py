"""The time loops of the fused ConvGRU sequence kernels (docs/derivations.md eqs. CG1-CG10).

:func:`minigru.functional.convgru_forward` and :func:`~minigru.functional.convgru_backward` set up
the gate and state buffers (channel-major: (C, P) blocks, P = N·Ho·Wo pixels) and call these
loops: per step one im2col of the state, one GEMM per recurrent convolution and in-place gate
arithmetic. ``hidden_n`` is always U_hn * h + b_hn (reset_after), ``rh`` always r ⊙ h (reset_before).
"""
from __future__ import annotations

from .activations import sigmoid
from .conv import col2im, im2col


def _state_cols(h_cm, kh, kw):
    """im2col (eq. C4) of a channel-major state batch (C, N, Ho, Wo) for the 'same' recurrent convolution:
    (C·kh·kw, N·Ho·Wo), columns ordered (n, a, b) like the state's pixels."""
    return im2col(h_cm.transpose(1, 0, 2, 3), kh, kw, 1, (kh // 2, kw // 2), merge_batch=True)


def _state_cols_transpose(dcols, state_shape, kh, kw):
    """col2im (eq. C9) back to a channel-major state gradient (C, N·Ho·Wo); ``state_shape`` is (N, C, Ho, Wo)."""
    dh = col2im(dcols, state_shape, kh, kw, 1, (kh // 2, kw // 2), merge_batch=True)  # (N, C, Ho, Wo)
    return dh.transpose(1, 0, 2, 3).reshape(state_shape[1], -1)


def images(cm, steps, batch, Ho, Wo):
    """(T, C, N·Ho·Wo) channel-major states of all steps -> a (T·N, C, Ho, Wo) batch of images (one copy)."""
    hidden = cm.shape[1]
    return cm.reshape(steps, hidden, batch, Ho, Wo).transpose(0, 2, 1, 3, 4).reshape(steps * batch, hidden, Ho, Wo)

def loop_reset_after(xp, gates, hs, hidden_n, weight_hh, b_hn, batch, Ho, Wo):
    """Steps 1..T of CG1, CG2, CG4, CG5: one im2col, one GEMM and in-place gate updates per step."""
    hidden, kh, kw = weight_hh.shape[1:]
    w_mat = weight_hh.reshape(3 * hidden, -1)
    gh = xp.empty((3, hidden, gates.shape[-1]), dtype=gates.dtype)
    tmp = xp.empty_like(gh[0])
    for t, g in enumerate(gates):
        h = hs[t]
        xp.matmul(w_mat, _state_cols(h.reshape(hidden, batch, Ho, Wo), kh, kw), out=gh.reshape(3 * hidden, -1))
        rz = g[:2]                      # r and z are adjacent: one sigmoid for both (CG1, CG2)
        rz += gh[:2]
        sigmoid(rz, out=rz)
        r, z, n = g
        if b_hn is None:
            xp.copyto(hidden_n[t], gh[2])
        else:
            xp.add(gh[2], b_hn, out=hidden_n[t])
        xp.multiply(r, hidden_n[t], out=tmp)
        n += tmp
        xp.tanh(n, out=n)               # CG4
        _mix(xp, h, n, z, out=hs[t + 1])


def loop_reset_before(xp, gates, hs, rh, weight_hh, batch, Ho, Wo):
    """Steps 1..T of CG1, CG2, CG3, CG5: n needs r ⊙ h first, so two recurrent convolutions per step."""
    hidden, kh, kw = weight_hh.shape[1:]
    w_rz = weight_hh[:2 * hidden].reshape(2 * hidden, -1)
    w_n = weight_hh[2 * hidden:].reshape(hidden, -1)
    grz = xp.empty((2, hidden, gates.shape[-1]), dtype=gates.dtype)
    tmp = xp.empty_like(grz[0])
    for t, g in enumerate(gates):
        h = hs[t]
        xp.matmul(w_rz, _state_cols(h.reshape(hidden, batch, Ho, Wo), kh, kw), out=grz.reshape(2 * hidden, -1))
        rz = g[:2]
        rz += grz
        sigmoid(rz, out=rz)             # CG1, CG2
        r, z, n = g
        xp.multiply(r, h, out=rh[t])
        xp.matmul(w_n, _state_cols(rh[t].reshape(hidden, batch, Ho, Wo), kh, kw), out=tmp)
        n += tmp
        xp.tanh(n, out=n)               # CG3
        _mix(xp, h, n, z, out=hs[t + 1])


def _mix(xp, h, n, z, out):
    """CG5 as h' = n + z ⊙ (h − n), written into ``out``."""
    xp.subtract(h, n, out=out)
    out *= z
    out += n

def _gate_gradients(xp, dh, h, r, z, n, da_z, da_n, tmp):
    """CG6 for one step: da_z = dh ⊙ (h − n) ⊙ z(1 − z) and da_n = dh ⊙ (1 − z) ⊙ (1 − n²), in place."""
    xp.subtract(h, n, out=da_z)
    da_z *= dh
    da_z *= z
    xp.subtract(1, z, out=tmp)
    da_z *= tmp
    xp.multiply(dh, tmp, out=da_n)
    xp.multiply(n, n, out=tmp)
    xp.subtract(1, tmp, out=tmp)
    da_n *= tmp


def backward_loop_reset_after(xp, carry, dh_all, da, da_n_in, gates, hs, hidden_n, weight_hh, batch, Ho, Wo):
    """Steps T..1 of CG6, CG7 (reset_after) and CG9; ``carry`` ends as ∂L/∂h_0 (channel-major)."""
    hidden, kh, kw = weight_hh.shape[1:]
    w_mat_t = weight_hh.reshape(3 * hidden, -1).T
    tmp = xp.empty_like(carry)
    for t in range(len(gates) - 1, -1, -1):
        r, z, n = gates[t]
        da_r, da_z, da_hidden_n = da[t]
        dh = dh_all[t]
        dh += carry                                                  # CG9: total ∂L/∂h_{t+1}
        _gate_gradients(xp, dh, hs[t], r, z, n, da_z, da_n_in[t], tmp)
        xp.multiply(da_n_in[t], r, out=da_hidden_n)                  # CG7: what reaches U_hn * h + b_hn
        xp.multiply(da_hidden_n, hidden_n[t], out=da_r)              # CG7: da_n ⊙ hidden_n ⊙ r(1 − r)
        xp.subtract(1, r, out=tmp)
        da_r *= tmp
        dcols = w_mat_t @ da[t].reshape(3 * hidden, -1)              # CG9: the transposed convolution
        carry[...] = _state_cols_transpose(dcols, (batch, hidden, Ho, Wo), kh, kw)
        xp.multiply(dh, z, out=tmp)
        carry += tmp


def backward_loop_reset_before(xp, carry, dh_all, da, gates, hs, weight_hh, batch, Ho, Wo):
    """Steps T..1 of CG6, CG7 (reset_before) and CG9: d(r ⊙ h) is a second transposed convolution."""
    hidden, kh, kw = weight_hh.shape[1:]
    w_rz_t = weight_hh[:2 * hidden].reshape(2 * hidden, -1).T
    w_n_t = weight_hh[2 * hidden:].reshape(hidden, -1).T
    tmp = xp.empty_like(carry)
    state_shape = (batch, hidden, Ho, Wo)
    for t in range(len(gates) - 1, -1, -1):
        r, z, n = gates[t]
        da_r, da_z, da_n = da[t]
        h = hs[t]
        dh = dh_all[t]
        dh += carry                                                  # CG9
        _gate_gradients(xp, dh, h, r, z, n, da_z, da_n, tmp)
        d_rh = _state_cols_transpose(w_n_t @ da_n, state_shape, kh, kw)   # CG7: d(r ⊙ h)
        xp.multiply(d_rh, h, out=da_r)                               # CG7: d(r ⊙ h) ⊙ h ⊙ r(1 − r)
        da_r *= r
        xp.subtract(1, r, out=tmp)
        da_r *= tmp
        dcols = w_rz_t @ da[t, :2].reshape(2 * hidden, -1)
        carry[...] = _state_cols_transpose(dcols, state_shape, kh, kw)   # CG9: U_hr, U_hz transposed
        xp.multiply(dh, z, out=tmp)
        carry += tmp
        xp.multiply(d_rh, r, out=tmp)
        carry += tmp
