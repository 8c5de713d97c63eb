"""Reference sequence kernels: a whole RNN, GRU or LSTM sequence as a plain loop over the step kernels.

CS231n style: the forward pass calls ``*_step_forward`` once per time step and
keeps every step's cache; the backward pass walks the steps in reverse, adds the
gradient arriving from the later step to the one from the output, calls
``*_step_backward`` and sums the weight gradients of all steps (backpropagation
through time, docs/derivations.md eqs. R5, G15, M9). Nothing is fused, pooled
or reused, so these are slow and obviously right: the tests compare the fused
kernels of :mod:`minigru.functional.rnn`, :mod:`~minigru.functional.gru` and
:mod:`~minigru.functional.lstm` with them, and a layer built with
``kernel="reference"`` (``nn.GRU(..., kernel="reference")``) runs on them.

The step kernels are looked up in their modules at every call
(``gru.gru_step_forward``, not a name bound at import), so that in a classroom
assignment, where the step kernels' solution regions are the students' code,
the layers run on the students' step kernels.

Signatures and returns are those of the fused kernels (same arguments, same
gradients, None bias gradients without biases); the caches are
:class:`ReferenceCache` tuples, which a backward does not consume.
Shapes: T steps, N sequences, I input features, H hidden units.
"""
from __future__ import annotations

from typing import NamedTuple

from .._checks import check_grad_shape
from ..backend import get_array_module
from . import gru, lstm, rnn
from ._recurrent import check_recurrent_args

__all__ = ["rnn_reference_forward", "rnn_reference_backward", "gru_reference_forward", "gru_reference_backward",
           "lstm_reference_forward", "lstm_reference_backward", "ReferenceCache"]


class ReferenceCache(NamedTuple):
    """The caches of every step, in time order, and the shape (T, N, H) of the hidden states."""
    steps: tuple
    shape: tuple


def _zeros_if_none(xp, state, x, hidden):
    return xp.zeros((x.shape[1], hidden), dtype=x.dtype) if state is None else state


def _run_steps(xp, step, x, states):
    """Call ``step(x_t, *states) -> (new states, cache)`` for t = 1..T; return the stacked first states
    (T, N, H), the last states and the caches. ``new states`` is one array (RNN, GRU) or a tuple (LSTM)."""
    outputs, caches = [], []
    for x_t in x:
        new, cache = step(x_t, *states)
        states = new if isinstance(new, tuple) else (new,)
        outputs.append(states[0])
        caches.append(cache)
    return xp.stack(outputs), states, tuple(caches)


def _accumulate(total, grads):
    """Add one step's parameter gradients into the running sums (None stays None: no biases)."""
    if total is None:
        return [None if g is None else g.copy() for g in grads]
    for k, g in enumerate(grads):
        if g is not None:
            total[k] += g
    return total


def _backward_steps(xp, kernel, step_backward, dhs, dlast, cache, state_count):
    """Backpropagation through time over the step caches.

    ``dlast``: the extra gradients on the last states (each (N, H) or None); ``step_backward(dstates,
    step_cache)`` returns ``(dx, *dstates_prev, *dparams)``. Returns ``(dx, dstates0, dparams)``.
    """
    steps, batch, hidden = cache.shape
    check_grad_shape(kernel, "dhs", dhs, (steps, batch, hidden), optional=True)
    for name, d in zip(("dh_last", "dc_last"), dlast):
        check_grad_shape(kernel, name, d, (batch, hidden), optional=True)
    dtype = cache.steps[0].x.dtype
    # copies: a step backward (a student's, say) may update its gradient arguments in place
    carry = [xp.zeros((batch, hidden), dtype=dtype) if d is None else d.copy() for d in dlast]
    dxs = [None] * steps
    total = None
    for t in range(steps - 1, -1, -1):
        dh = carry[0] if dhs is None else carry[0] + dhs[t]
        grads = step_backward((dh, *carry[1:]), cache.steps[t])
        dxs[t] = grads[0]
        carry = list(grads[1:1 + state_count])
        total = _accumulate(total, grads[1 + state_count:])
    return xp.stack(dxs), carry, total


def rnn_reference_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
    """:func:`~minigru.functional.rnn_forward` as a loop over :func:`~minigru.functional.rnn_step_forward`.

    x: (T, N, I); h0: (N, H) or None (zeros); weight_ih (H, I), weight_hh (H, H), biases (H,) or None.
    Returns ``(hs, cache)`` with hs: (T, N, H).
    """
    xp = check_recurrent_args("rnn_reference_forward", x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh,
                              1, 3)
    h = _zeros_if_none(xp, h0, x, weight_hh.shape[1])

    def step(x_t, h_prev):
        return rnn.rnn_step_forward(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)

    hs, _, caches = _run_steps(xp, step, x, (h,))
    return hs, ReferenceCache(caches, tuple(hs.shape))


def rnn_reference_backward(dhs, dh_last, cache):
    """Backward of :func:`rnn_reference_forward`, with the returns of :func:`~minigru.functional.rnn_backward`:
    ``(dx, dh0, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``, (T, N, I), (N, H), (H, I), (H, H), (H,), (H,)
    (bias gradients None for a forward without biases)."""
    xp = _module_of(cache)

    def step_backward(dstates, step_cache):
        return rnn.rnn_step_backward(dstates[0], step_cache)

    dx, (dh0,), dparams = _backward_steps(xp, "rnn_reference_backward", step_backward, dhs, (dh_last,), cache, 1)
    if not cache.steps[0].has_bias:   # rnn_step_backward returns zero bias gradients even then
        dparams[2] = dparams[3] = None
    return (dx, dh0, *dparams)


def gru_reference_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, reset_after=True):
    """:func:`~minigru.functional.gru_forward` as a loop over :func:`~minigru.functional.gru_step_forward`.

    x: (T, N, I); h0: (N, H) or None (zeros); weight_ih (3H, I), weight_hh (3H, H), biases (3H,) or
    None; reset_after: eq. G5 (True) or G6 (False). Returns ``(hs, cache)`` with hs: (T, N, H).
    """
    xp = check_recurrent_args("gru_reference_forward", x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh,
                              3, 3)
    h = _zeros_if_none(xp, h0, x, weight_hh.shape[1])

    def step(x_t, h_prev):
        return gru.gru_step_forward(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh, reset_after)

    hs, _, caches = _run_steps(xp, step, x, (h,))
    return hs, ReferenceCache(caches, tuple(hs.shape))


def gru_reference_backward(dhs, dh_last, cache):
    """Backward of :func:`gru_reference_forward`, with the returns of :func:`~minigru.functional.gru_backward`:
    ``(dx, dh0, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``."""
    def step_backward(dstates, step_cache):
        return gru.gru_step_backward(dstates[0], step_cache)

    dx, (dh0,), dparams = _backward_steps(_module_of(cache), "gru_reference_backward", step_backward, dhs,
                                          (dh_last,), cache, 1)
    return (dx, dh0, *dparams)


def lstm_reference_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    """:func:`~minigru.functional.lstm_forward` as a loop over :func:`~minigru.functional.lstm_step_forward`.

    x: (T, N, I); h0, c0: (N, H) or None (zeros); weight_ih (4H, I), weight_hh (4H, H), biases (4H,)
    or None. Returns ``((hs, c_n), cache)`` with hs: (T, N, H) and c_n: (N, H), the last cell state.
    """
    xp = check_recurrent_args("lstm_reference_forward", x, {"h0": h0, "c0": c0}, weight_ih, weight_hh,
                              bias_ih, bias_hh, 4, 3)
    hidden = weight_hh.shape[1]
    h, c = _zeros_if_none(xp, h0, x, hidden), _zeros_if_none(xp, c0, x, hidden)

    def step(x_t, h_prev, c_prev):
        return lstm.lstm_step_forward(x_t, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh)

    hs, (_, c_n), caches = _run_steps(xp, step, x, (h, c))
    return (hs, c_n), ReferenceCache(caches, tuple(hs.shape))


def lstm_reference_backward(dhs, dh_last, dc_last, cache):
    """Backward of :func:`lstm_reference_forward`, with the returns of :func:`~minigru.functional.lstm_backward`:
    ``(dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh)``."""
    def step_backward(dstates, step_cache):
        return lstm.lstm_step_backward(dstates[0], dstates[1], step_cache)

    dx, (dh0, dc0), dparams = _backward_steps(_module_of(cache), "lstm_reference_backward", step_backward, dhs,
                                              (dh_last, dc_last), cache, 2)
    return (dx, dh0, dc0, *dparams)


def _module_of(cache):
    if not isinstance(cache, ReferenceCache):
        raise TypeError(f"a reference backward needs the ReferenceCache of its forward, got {type(cache).__name__}")
    return get_array_module(cache.steps[0].x)
