"""Convolutional GRU kernels (Ballas et al. 2016): one readable step and a whole sequence (docs/derivations.md §CG).

A ConvGRU is a GRU whose states are images (C, H, W) and whose matrix
products are convolutions, so every gate sees a neighbourhood instead of the
whole vector. Weights are stacked like a GRU's, gates in the order r, z, n:
``weight_ih`` (3C, C_in, kh_i, kw_i) = [W_xr; W_xz; W_xn], ``weight_hh``
(3C, C, kh, kw) = [U_hr; U_hz; U_hn], ``bias_ih``/``bias_hh`` (3C,) or None.
``*`` is a convolution (a cross-correlation, eq. C1)::

    r  = σ(W_xr * x + b_ir + U_hr * h + b_hr)                                  (CG1)
    z  = σ(W_xz * x + b_iz + U_hz * h + b_hz)                                  (CG2)
    n  = tanh(W_xn * x + b_in + U_hn * (r ⊙ h) + b_hn)    reset_after=False    (CG3)
    n  = tanh(W_xn * x + b_in + r ⊙ (U_hn * h + b_hn))    reset_after=True     (CG4)
    h' = (1 − z) ⊙ n + z ⊙ h                                                   (CG5)

The default, ``reset_after=False`` (CG3), is Ballas et al.'s equation: the
reset gate acts on the state *before* the recurrent convolution, as in Cho
et al.'s GRU. There is no PyTorch ConvGRU to stay compatible with, so the
paper wins. ``reset_after=True`` (CG4) is the PyTorch/cuDNN placement of
minigru's ``GRU``; it needs one recurrent convolution per step instead of
two, so it is faster. The update (CG5) is minigru's and torch's: z ≈ 1 keeps
the old state (Ballas et al. write the same formula with z and 1 − z swapped).

Convolutions: the recurrent one has stride 1 and 'same' padding, so its
kernel must be odd; the input one may have any kernel, stride and padding
(default kernel//2), and its output size (Ho, Wo) is the state's size, so a
stride-2 input convolution turns (H, W) frames into (H/2, W/2) states.

Shapes: T steps, N sequences, C_in input channels, C hidden channels, frames
(H, W), states (Ho, Wo), P = N·Ho·Wo pixels of a state batch.

Two tiers, as for the GRU (see :mod:`minigru.functional`): the step kernels
are written with :func:`conv2d_forward` for reading; the sequence kernels are
fused for speed and follow the fast GRU (eqs. CG8-CG10): the input
convolutions of all T steps are ONE im2col and ONE GEMM; per step only the
recurrent convolution(s) and in-place gate arithmetic remain; every weight
gradient is one GEMM after the backward loop. Inside the loop states are
kept channel-major, (C, N, Ho, Wo): the GEMM ``U_mat @ cols`` produces
exactly that layout, with each gate's block contiguous.

Names: ``hidden_n`` is always ``U_hn * h + b_hn`` under reset_after (what r
multiplies, CG4), ``rh`` always ``r ⊙ h`` under reset_before (what U_hn
convolves, CG3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._checks import check_grad_shape
from ..backend import get_array_module
from ._recurrent import SequenceCache, bias_gradient, open_cache
from ._convgru_loops import (backward_loop_reset_after, backward_loop_reset_before, images, loop_reset_after,
                             loop_reset_before)
from .activations import sigmoid
from .conv import col2im, conv2d_backward, conv2d_forward, conv_geometry, im2col

__all__ = ["convgru_step_forward", "convgru_step_backward", "convgru_forward", "convgru_backward",
           "convgru_state_size", "ConvGRUStepCache", "ConvGRUCache"]


class ConvGRUStepCache(NamedTuple):
    """What :func:`convgru_step_backward` needs from :func:`convgru_step_forward`: h_prev, the gates
    r, z and candidate n (N, C, Ho, Wo), ``hidden_n`` = U_hn * h + b_hn under reset_after (else
    None), the caches of the input convolution and of the recurrent one(s)."""
    h_prev: object
    r: object
    z: object
    n: object
    hidden_n: object
    conv_x: tuple
    conv_h: tuple
    reset_after: bool
    has_bias: bool


@dataclass(kw_only=True, eq=False)
class ConvGRUCache(SequenceCache):
    """The cache of :func:`convgru_forward` (channel-major, P = N·Ho·Wo pixels).

    gates (T, 3, C, P): r, z, n of every step; hs (T+1, C, P): h_0..h_T; hidden_n (T, C, P):
    U_hn * h_t + b_hn under reset_after, else None; rh (T, C, P): r ⊙ h_t under reset_before, else
    None; x_cols: im2col of all input frames; x_shape, stride, pad_in, state (Ho, Wo): geometry.
    """
    x_shape: tuple
    x_cols: object
    gates: object
    hs: object
    hidden_n: object
    rh: object
    weight_ih: object
    weight_hh: object
    stride: object
    pad_in: object
    state: tuple
    has_bias: bool
    reset_after: bool


# ----------------------------------------------------------------------- checks and geometry
def input_padding(weight_ih, padding):
    """The input convolution's padding: ``padding`` itself, or (kh_i//2, kw_i//2) when it is None."""
    if padding is None:
        return (weight_ih.shape[2] // 2, weight_ih.shape[3] // 2)
    return padding


def same_padding(weight_hh):
    """'same' padding (kh//2, kw//2) of the recurrent convolution (odd kernels only, checked before)."""
    return (weight_hh.shape[2] // 2, weight_hh.shape[3] // 2)


def convgru_state_size(frame_size, weight_ih, stride=1, padding=None):
    """(Ho, Wo) of the state for frames of ``frame_size`` (H, W): the input convolution's output size (eq. C2)."""
    g = conv_geometry((1, 1, *frame_size), weight_ih.shape[2:], stride, input_padding(weight_ih, padding))
    return g.Ho, g.Wo


def _check_args(kernel, x, h, weight_ih, weight_hh, bias_ih, bias_hh, stride, padding, x_ndim):
    """Validate a ConvGRU kernel's arguments; return (xp, Ho, Wo)."""
    xp = get_array_module(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    layout = "(N, C_in, H, W)" if x_ndim == 4 else "(T, N, C_in, H, W)"
    if x.ndim != x_ndim:
        raise ValueError(f"{kernel}: x must have shape {layout}, got {x.ndim}-D shape {tuple(x.shape)}")
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{kernel}: x must be floating point, got dtype {x.dtype}")
    if weight_hh.ndim != 4 or weight_hh.shape[0] != 3 * weight_hh.shape[1]:
        raise ValueError(f"{kernel}: weight_hh must have shape (3*C, C, kh, kw), got {tuple(weight_hh.shape)}")
    hidden, kh, kw = weight_hh.shape[1:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"{kernel}: the recurrent kernel must have odd sizes for 'same' padding, got {kh}x{kw}")
    if weight_ih.ndim != 4 or weight_ih.shape[:2] != (3 * hidden, x.shape[-3]):
        raise ValueError(f"{kernel}: weight_ih must have shape ({3 * hidden}, {x.shape[-3]}, kh, kw) for C={hidden} "
                         f"and x with {x.shape[-3]} channels, got {tuple(weight_ih.shape)}")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if b is not None and tuple(b.shape) != (3 * hidden,):
            raise ValueError(f"{kernel}: {name} must have shape ({3 * hidden},), got {tuple(b.shape)}")
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{kernel}: give both bias_ih and bias_hh, or neither (bias=False)")
    if 0 in x.shape:
        raise ValueError(f"{kernel}: x is empty, shape {tuple(x.shape)}")
    Ho, Wo = convgru_state_size(x.shape[-2:], weight_ih, stride, padding)
    if h is not None and tuple(h.shape) != (x.shape[-4], hidden, Ho, Wo):
        raise ValueError(f"{kernel}: the state must have shape (N, C, Ho, Wo) = {(x.shape[-4], hidden, Ho, Wo)} "
                         f"(Ho, Wo: the input convolution's output size), got {tuple(h.shape)}")
    for name, a in (("weight_ih", weight_ih), ("weight_hh", weight_hh), ("bias_ih", bias_ih),
                    ("bias_hh", bias_hh), ("h", h)):
        if a is not None and a.dtype != x.dtype:
            raise TypeError(f"{kernel}: {name} has dtype {a.dtype} but x has {x.dtype}; cast one of them "
                            "(module.to(dtype) or x.astype(...))")
    return xp, Ho, Wo


def _thirds(a, axis=0):
    """The r, z, n blocks of ``a`` along ``axis`` (rows of a weight, entries of a bias, channels of gates)."""
    c = a.shape[axis] // 3
    index = [slice(None)] * a.ndim
    blocks = []
    for k in range(3):
        index[axis] = slice(k * c, (k + 1) * c)
        blocks.append(a[tuple(index)])
    return blocks


# ----------------------------------------------------------------------- one step, for reading
def convgru_step_forward(x, h_prev, weight_ih, weight_hh, bias_ih, bias_hh, stride=1, padding=None,
                         reset_after=False):
    """One ConvGRU step (eqs. CG1-CG5), written with :func:`conv2d_forward` for reading.

    x: (N, C_in, H, W); h_prev: (N, C, Ho, Wo) or None (zeros); weight_ih:
    (3C, C_in, kh_i, kw_i); weight_hh: (3C, C, kh, kw), kh and kw odd;
    bias_ih, bias_hh: (3C,) or None; stride, padding: of the input
    convolution (padding None means (kh_i//2, kw_i//2)); reset_after: False
    for Ballas et al.'s candidate (CG3), True for the PyTorch placement (CG4).
    Returns ``(h_next, cache)`` with h_next: (N, C, Ho, Wo).
    """
    xp, Ho, Wo = _check_args("convgru_step_forward", x, h_prev, weight_ih, weight_hh, bias_ih, bias_hh,
                             stride, padding, 4)
    hidden = weight_hh.shape[1]
    if h_prev is None:
        h_prev = xp.zeros((x.shape[0], hidden, Ho, Wo), dtype=x.dtype)
    same = same_padding(weight_hh)
    gx, cache_x = conv2d_forward(x, weight_ih, bias_ih, stride, input_padding(weight_ih, padding))
    gx_r, gx_z, gx_n = _thirds(gx, axis=1)
    b_rz = b_n = None
    if bias_hh is not None:
        b_rz, b_n = bias_hh[:2 * hidden], bias_hh[2 * hidden:]
    if reset_after:
        gh, cache_h = conv2d_forward(h_prev, weight_hh, bias_hh, 1, same)
        gh_r, gh_z, hidden_n = _thirds(gh, axis=1)
        r = sigmoid(gx_r + gh_r)                          # CG1
        z = sigmoid(gx_z + gh_z)                          # CG2
        n = xp.tanh(gx_n + r * hidden_n)                  # CG4
        convs = (cache_h,)
    else:
        grz, cache_rz = conv2d_forward(h_prev, weight_hh[:2 * hidden], b_rz, 1, same)
        r = sigmoid(gx_r + grz[:, :hidden])               # CG1
        z = sigmoid(gx_z + grz[:, hidden:])               # CG2
        recurrent_n, cache_n = conv2d_forward(r * h_prev, weight_hh[2 * hidden:], b_n, 1, same)
        n = xp.tanh(gx_n + recurrent_n)                   # CG3
        hidden_n = None
        convs = (cache_rz, cache_n)
    h_next = (1 - z) * n + z * h_prev                     # CG5
    cache = ConvGRUStepCache(h_prev=h_prev, r=r, z=z, n=n, hidden_n=hidden_n, conv_x=cache_x, conv_h=convs,
                             reset_after=reset_after, has_bias=bias_ih is not None)
    return h_next, cache


def convgru_step_backward(dh_next, cache):
    """Backward of :func:`convgru_step_forward` (eqs. CG6, CG7 and the convolution's C6-C9).

    dh_next: (N, C, Ho, Wo). Returns ``(dx, dh_prev, dweight_ih, dweight_hh,
    dbias_ih, dbias_hh)`` with shapes (N, C_in, H, W), (N, C, Ho, Wo),
    (3C, C_in, kh_i, kw_i), (3C, C, kh, kw), (3C,), (3C,); the bias gradients
    are None when the step ran without biases.
    """
    check_grad_shape("convgru_step_backward", "dh_next", dh_next, cache.h_prev.shape)
    h_prev, r, z, n = cache.h_prev, cache.r, cache.z, cache.n
    xp = get_array_module(dh_next, h_prev)
    dh_prev = dh_next * z                                 # CG6: the direct path
    da_z = dh_next * (h_prev - n) * z * (1 - z)
    da_n = dh_next * (1 - z) * (1 - n * n)
    if cache.reset_after:
        (cache_h,) = cache.conv_h
        da_r = da_n * cache.hidden_n * r * (1 - r)                    # CG7, reset_after: dr = da_n ⊙ (U_hn * h + b_hn)
        dh_conv, dweight_hh, dbias_hh = conv2d_backward(xp.concatenate([da_r, da_z, da_n * r], axis=1), cache_h)
        dh_prev += dh_conv
    else:
        cache_rz, cache_n = cache.conv_h
        d_rh, dweight_hn, dbias_hn = conv2d_backward(da_n, cache_n)   # d(r ⊙ h): the transposed convolution
        da_r = d_rh * h_prev * r * (1 - r)                # CG7, reset_before
        dh_prev += d_rh * r
        dh_conv, dweight_hrz, dbias_hrz = conv2d_backward(xp.concatenate([da_r, da_z], axis=1), cache_rz)
        dh_prev += dh_conv
        dweight_hh = xp.concatenate([dweight_hrz, dweight_hn], axis=0)
        dbias_hh = None if dbias_hn is None else xp.concatenate([dbias_hrz, dbias_hn])
    dx, dweight_ih, dbias_ih = conv2d_backward(xp.concatenate([da_r, da_z, da_n], axis=1), cache.conv_x)
    return dx, dh_prev, dweight_ih, dweight_hh, dbias_ih, dbias_hh


# ----------------------------------------------------------------------- the whole sequence, for speed
# (the time loops themselves are in _convgru_loops.py)
def convgru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, stride=1, padding=None, reset_after=False):
    """A ConvGRU over a whole sequence, one layer (eqs. CG1-CG5 for t = 1..T, computed as CG8).

    x: (T, N, C_in, H, W); h0: (N, C, Ho, Wo) or None (zeros); weight_ih:
    (3C, C_in, kh_i, kw_i); weight_hh: (3C, C, kh, kw), odd kh and kw;
    bias_ih, bias_hh: (3C,) or None; stride, padding: of the input
    convolution (padding None means (kh_i//2, kw_i//2)); reset_after: False
    for CG3 (Ballas et al.), True for CG4. Returns ``(hs, cache)`` with hs:
    (T, N, C, Ho, Wo), the state after every step (``hs[-1]`` is h_T).
    """
    xp, Ho, Wo = _check_args("convgru_forward", x, h0, weight_ih, weight_hh, bias_ih, bias_hh, stride, padding, 5)
    steps, batch, channels_in, H, W = x.shape
    hidden, kh, kw = weight_hh.shape[1:]
    pixels = batch * Ho * Wo
    pad_in = input_padding(weight_ih, padding)
    # CG8: the input convolutions of all T steps as ONE im2col over the T·N frames and ONE GEMM
    x_cols = im2col(x.reshape(steps * batch, channels_in, H, W), weight_ih.shape[2], weight_ih.shape[3],
                    stride, pad_in, merge_batch=True)                       # (C_in·kh_i·kw_i, T·P)
    proj = weight_ih.reshape(3 * hidden, -1) @ x_cols                      # (3C, T·P)
    if bias_ih is not None:
        # every hidden bias adds outside the reset gate, except b_hn under reset_after (CG4)
        folded = bias_ih + bias_hh
        if reset_after:
            folded[2 * hidden:] = bias_ih[2 * hidden:]
        proj += folded[:, None]
    # gates[t, k] (C, P): gate k (r, z, n) of step t, first its input-side pre-activation, then its value
    gates = xp.empty((steps, 3, hidden, pixels), dtype=x.dtype)
    gates[...] = proj.reshape(3, hidden, steps, pixels).transpose(2, 0, 1, 3)
    del proj
    hs = xp.empty((steps + 1, hidden, pixels), dtype=x.dtype)              # hs[t]: h_t, channel-major
    hs[0] = 0 if h0 is None else h0.transpose(1, 0, 2, 3).reshape(hidden, pixels)
    # reset_after keeps hidden_n[t] = U_hn * h_t + b_hn (for dr, CG7); reset_before keeps
    # rh[t] = r ⊙ h_t (the input of U_hn, for dU_hn)
    kept = xp.empty((steps, hidden, pixels), dtype=x.dtype)
    if reset_after:
        hidden_n, rh = kept, None
        b_hn = None if bias_hh is None else bias_hh[2 * hidden:, None]
        loop_reset_after(xp, gates, hs, hidden_n, weight_hh, b_hn, batch, Ho, Wo)
    else:
        hidden_n, rh = None, kept
        loop_reset_before(xp, gates, hs, rh, weight_hh, batch, Ho, Wo)
    out = xp.empty((steps, batch, hidden, Ho, Wo), dtype=x.dtype)
    out[...] = hs[1:].reshape(steps, hidden, batch, Ho, Wo).transpose(0, 2, 1, 3, 4)
    cache = ConvGRUCache(x_shape=tuple(x.shape), x_cols=x_cols, gates=gates, hs=hs, hidden_n=hidden_n, rh=rh,
                         weight_ih=weight_ih, weight_hh=weight_hh, stride=stride, pad_in=pad_in, state=(Ho, Wo),
                         has_bias=bias_ih is not None, reset_after=reset_after)
    return out, cache


def convgru_backward(dhs, dh_last, cache):
    """Backward of :func:`convgru_forward`: backpropagation through time (eqs. CG6-CG10).

    dhs: (T, N, C, Ho, Wo) or None, the gradient of the loss with respect to
    every output state; dh_last: (N, C, Ho, Wo) or None, an extra gradient on
    h_T. Returns ``(dx, dh0, dweight_ih, dweight_hh, dbias_ih, dbias_hh)`` with
    shapes (T, N, C_in, H, W), (N, C, Ho, Wo), (3C, C_in, kh_i, kw_i),
    (3C, C, kh, kw), (3C,), (3C,); the bias gradients are None for a kernel run
    without biases. The cache is consumed (each forward allows one backward).
    """
    saved = open_cache(cache, "convgru_backward")
    gates, hs, weight_hh, weight_ih = saved.gates, saved.hs, saved.weight_hh, saved.weight_ih
    steps, batch = saved.x_shape[:2]
    Ho, Wo = saved.state
    hidden, kh, kw = weight_hh.shape[1:]
    pixels = gates.shape[-1]
    xp = get_array_module(hs, dhs, dh_last)
    state_shape = (steps, batch, hidden, Ho, Wo)
    check_grad_shape("convgru_backward", "dhs", dhs, state_shape, optional=True)
    check_grad_shape("convgru_backward", "dh_last", dh_last, state_shape[1:], optional=True)
    # dh_all[t] = ∂L/∂h_{t+1} from the outputs; the loop adds what flows back from step t+2 (CG9)
    dh_all = xp.zeros((steps, hidden, pixels), dtype=gates.dtype)
    if dhs is not None:
        dh_all[...] = dhs.transpose(0, 2, 1, 3, 4).reshape(steps, hidden, pixels)
    carry = xp.zeros((hidden, pixels), dtype=gates.dtype)
    if dh_last is not None:
        carry[...] = dh_last.transpose(1, 0, 2, 3).reshape(hidden, pixels)
    # da[t]: gradients of the hidden-side pre-activations [a_r; a_z; a_n^h] of step t (what U_hh sees);
    # under reset_after the input side's n block differs (it is da_n, not da_n ⊙ r): kept in da_n_in
    da = xp.empty(gates.shape, dtype=gates.dtype)
    da_n_in = xp.empty((steps, hidden, pixels), dtype=gates.dtype) if saved.reset_after else None
    if saved.reset_after:
        backward_loop_reset_after(xp, carry, dh_all, da, da_n_in, gates, hs, saved.hidden_n, weight_hh,
                                  batch, Ho, Wo)
    else:
        backward_loop_reset_before(xp, carry, dh_all, da, gates, hs, weight_hh, batch, Ho, Wo)
    # CG10: the weight gradients of all steps at once, one im2col over the T·N states and one GEMM each
    da_rows = xp.empty((3 * hidden, steps, pixels), dtype=gates.dtype)
    da_rows[...] = da.reshape(steps, 3 * hidden, pixels).transpose(1, 0, 2)
    da_rows = da_rows.reshape(3 * hidden, steps * pixels)
    h_cols = im2col(images(hs[:-1], steps, batch, Ho, Wo), kh, kw, 1, (kh // 2, kw // 2), merge_batch=True)
    has_bias = saved.has_bias
    if saved.reset_after:
        dweight_hh = (da_rows @ h_cols.T).reshape(weight_hh.shape)
        dbias_hh = bias_gradient(da_rows) if has_bias else None
        da_rows.reshape(3, hidden, steps, pixels)[2] = da_n_in.transpose(1, 0, 2)   # the input side's n block
    else:
        rh_cols = im2col(images(saved.rh, steps, batch, Ho, Wo), kh, kw, 1, (kh // 2, kw // 2), merge_batch=True)
        dweight_hh = xp.empty_like(weight_hh)
        dweight_hh[:2 * hidden] = (da_rows[:2 * hidden] @ h_cols.T).reshape(2 * hidden, hidden, kh, kw)
        dweight_hh[2 * hidden:] = (da_rows[2 * hidden:] @ rh_cols.T).reshape(hidden, hidden, kh, kw)
        dbias_hh = None
    del h_cols
    dweight_ih = (da_rows @ saved.x_cols.T).reshape(weight_ih.shape)
    dbias_ih = bias_gradient(da_rows) if has_bias else None
    if has_bias and not saved.reset_after:
        dbias_hh = dbias_ih.copy()      # every b_h* adds to its pre-activation exactly like b_i* (CG3)
    frames_shape = (steps * batch,) + tuple(saved.x_shape[2:])
    dcols = weight_ih.reshape(3 * hidden, -1).T @ da_rows
    dx = col2im(dcols, frames_shape, weight_ih.shape[2], weight_ih.shape[3], saved.stride, saved.pad_in,
                merge_batch=True).reshape(saved.x_shape)
    dh0 = xp.empty((batch, hidden, Ho, Wo), dtype=gates.dtype)
    dh0[...] = carry.reshape(hidden, batch, Ho, Wo).transpose(1, 0, 2, 3)
    return dx, dh0, dweight_ih, dweight_hh, dbias_ih, dbias_hh


