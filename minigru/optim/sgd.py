"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay.

The update is PyTorch's ``torch.optim.SGD``, so the same hyper-parameters
mean the same thing (docs/user_guide.md eqs. O1-O3). For a parameter ``w``
with gradient ``∇w``, learning rate ``η``, momentum ``μ``, dampening ``τ``
and weight decay ``λ``::

    g = ∇w + λ·w                                      (O1)
    b = g                  on the first step          (O2)
    b = μ·b + (1 - τ)·g    afterwards
    d = g + μ·b  (Nesterov)   or   d = b               (O3)
    w = w - η·d

With ``momentum=0`` it is plain ``w = w - η·g``.
"""
from __future__ import annotations

from .. import backend, engine
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False), as ``torch.optim.SGD``.

    Parameters
    ----------
    params : iterable of Parameters (``model.parameters()``), or of dicts
        ``{"params": [...], "lr": ..., ...}`` to give groups their own settings.
    lr : learning rate η.
    momentum : μ, how much of the previous update direction is kept (0.9 is common).
    dampening : τ, scales down the new gradient's share of the momentum buffer.
    weight_decay : λ, L2 penalty ``λ/2·|w|²`` added to the loss (as the ``λ·w`` term of eq. O1).
    nesterov : look-ahead momentum (needs ``momentum > 0`` and ``dampening == 0``).

    The state of each parameter is its ``"momentum_buffer"`` (torch's name).
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"momentum must be >= 0, got {group['momentum']}")
        if not group["weight_decay"] >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, p, group, state) -> None:
        xp = backend.get_array_module(p.data, p.grad)
        lr, mu, tau, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
        fused = engine.kernels_for(p.data, p.grad, state.get("momentum_buffer"))
        if fused is not None:   # the numba engine (minigru.engine): the update below as one pass
            buf = state.get("momentum_buffer")
            first = mu != 0 and buf is None
            if first:
                buf = state["momentum_buffer"] = xp.empty_like(p.data)
            fused.sgd_update(p.data, p.grad, p.grad if buf is None else buf, lr, mu, tau, wd,
                             group["nesterov"], first)
            return
        decayed, step = self._work(p, 2)

        # (O1) the L2 penalty's gradient λ·w joins the loss gradient (p.grad itself is left untouched).
        g = p.grad
        if wd != 0:
            g = xp.multiply(p.data, wd, out=decayed)
            g += p.grad

        direction = g
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:                      # (O2) the buffer starts as the first gradient, undamped
                buf = state["momentum_buffer"] = g.copy()
            else:                                # (O2) b = μ·b + (1 - τ)·g
                buf *= mu
                if tau != 0:
                    # g is not needed after this (Nesterov forbids dampening), so it may be scaled in place.
                    g = xp.multiply(g, 1 - tau, out=decayed)
                buf += g
            if group["nesterov"]:                # (O3) d = g + μ·b
                direction = xp.multiply(buf, mu, out=step)
                direction += g
            else:
                direction = buf

        xp.multiply(direction, lr, out=step)      # w = w - η·d
        p.data -= step
