"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), with PyTorch's exact update.

For a parameter ``w`` with gradient ``∇w`` at step ``t = 1, 2, ...``
(docs/user_guide.md eqs. O4-O8)::

    g  = ∇w + λ·w                   (Adam's L2 weight decay)                 (O4)
    w  = w·(1 - η·λ)                (AdamW's decoupled decay, instead of O4)  (O5)
    m  = β1·m + (1 - β1)·g          first moment (running mean of g)         (O6)
    v  = β2·v + (1 - β2)·g²         second moment (running mean of g²)
    v̂ = max(v̂, v) with amsgrad, else v                                       (O7)
    w  = w - η/(1 - β1ᵗ) · m / (sqrt(v̂)/sqrt(1 - β2ᵗ) + ε)                    (O8)

``m`` and ``v`` start at zero, so early averages are too small; the factors
``1 - βᵗ`` undo that bias (eq. O8). Note where ε sits: outside the corrected
square root, as in torch.
"""
from __future__ import annotations

import math

from .. import backend
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False), as ``torch.optim.Adam``.

    Parameters
    ----------
    params : iterable of Parameters, or of parameter-group dicts (see :class:`~minigru.optim.SGD`).
    lr : learning rate η.
    betas : (β1, β2), decay rates of the running means of g and g² (OneCycleLR cycles β1).
    eps : ε, keeps the denominator away from zero.
    weight_decay : λ; Adam adds ``λ·w`` to the gradient (eq. O4), AdamW shrinks ``w`` directly (eq. O5).
    amsgrad : use the running maximum of ``v`` (eq. O7).

    State per parameter (torch's names): ``"step"``, ``"exp_avg"`` (m),
    ``"exp_avg_sq"`` (v) and, with amsgrad, ``"max_exp_avg_sq"``.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        betas = group["betas"] = tuple(group["betas"])
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not group["eps"] >= 0:
            raise ValueError(f"eps must be >= 0, got {group['eps']}")
        if not group["weight_decay"] >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def _update(self, p, group, state) -> None:
        xp = backend.get_array_module(p.data, p.grad)
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        decayed, work = self._work(p, 2)

        g = p.grad
        if wd != 0:
            if self.decoupled_weight_decay:      # (O5) AdamW: shrink the weights, leave g alone
                p.data *= 1 - lr * wd
            else:                                # (O4) Adam: L2 gradient (p.grad itself is left untouched)
                g = xp.multiply(p.data, wd, out=decayed)
                g += p.grad

        m *= beta1                               # (O6) m = β1·m + (1 - β1)·g
        m += xp.multiply(g, 1 - beta1, out=work)
        v *= beta2                               #      v = β2·v + (1 - β2)·g²
        xp.multiply(g, g, out=work)
        work *= 1 - beta2
        v += work

        if group["amsgrad"]:                     # (O7) never let the denominator shrink
            v_max = state.get("max_exp_avg_sq")
            if v_max is None:
                v_max = state["max_exp_avg_sq"] = xp.zeros_like(p.data)
            xp.maximum(v_max, v, out=v_max)
            v = v_max

        bias_correction1 = 1 - beta1 ** t        # (O8)
        bias_correction2 = 1 - beta2 ** t
        denom = xp.sqrt(v, out=work)
        denom /= math.sqrt(bias_correction2)
        denom += eps
        update = xp.divide(m, denom, out=work)
        update *= lr / bias_correction1
        p.data -= update


class AdamW(Adam):
    """Adam with decoupled weight decay (eq. O5), as ``torch.optim.AdamW``; ``weight_decay`` defaults to 1e-2."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
