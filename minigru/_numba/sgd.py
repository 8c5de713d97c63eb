"""The SGD update (:class:`minigru.optim.SGD`, docs/user_guide.md eqs. O1-O3) of one parameter as one pass.

The reference computes g = λw + ∇w, the momentum buffer, the Nesterov direction and the step
as separate whole-array operations (up to seven passes over three arrays); here each element
goes through all of them at once. The operations and their order are the reference's, and
the hyper-parameters arrive in the parameter's dtype, so the results are the same to the bit.
"""
from __future__ import annotations

import numba

__all__ = ["sgd_update"]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _update(w, grad, buf, lr, momentum, keep, decay, use_decay, use_momentum, use_dampening, nesterov, first):
    for i in numba.prange(w.size):
        g = grad[i]
        if use_decay:
            g = w[i] * decay + g                                      # O1
        d = g
        if use_momentum:
            if first:
                b = g                                                 # O2, first step
            else:
                b = buf[i] * momentum
                if use_dampening:
                    g = g * keep                                      # (1 − τ)·g
                b = b + g                                             # O2
            buf[i] = b
            d = b * momentum + g if nesterov else b                   # O3
        w[i] = w[i] - d * lr


def sgd_update(w, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """In place: one SGD step of ``w`` (any shape, C-contiguous) with gradient ``grad`` and momentum
    buffer ``buf`` (both like w; buf is ignored when momentum is 0, and written when ``first``)."""
    t = w.dtype.type
    _update(w.reshape(-1), grad.reshape(-1), buf.reshape(-1), t(lr), t(momentum), t(1 - dampening),
            t(weight_decay), weight_decay != 0, momentum != 0, dampening != 0, bool(nesterov), bool(first))
