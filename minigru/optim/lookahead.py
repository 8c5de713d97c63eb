"""Lookahead: every ``k`` optimizer steps, pull the weights back towards a slow copy of themselves.

Zhang et al.'s Lookahead (2019), in the form of hlb-cifar10 and airbench. The optimizer moves the
model's ("fast") weights as usual; a slow copy ``s`` follows them, and every ``k`` steps
(docs/user_guide.md, eq. O11)::

    s = decay·s + (1 - decay)·w        then        w = s                          (O11)

for every parameter and floating buffer (batch norm's running statistics). With ``decay = 0``
nothing changes (``s = w``); with ``decay`` near 1 the weights barely leave the slow copy, which
averages away the jitter of SGD's late steps. Airbench raises ``decay`` during training,
``decay(t) = 0.95**k · (t / T)**3`` at step ``t`` of ``T`` (:func:`airbench_decay`), and ends with
``w = s`` (:meth:`Lookahead.finish`). Unlike an EMA of the weights that is only looked at in the end
(:class:`~minigru.optim.ExponentialMovingAverage`), the pull-back changes the trajectory itself.

The training loop need not change: ``attach(optimizer)`` counts steps with a step post-hook::

    lookahead = Lookahead(model, k=5, decay=airbench_decay(total_steps)).attach(optimizer)
    Trainer(model, optimizer, loss).fit(train_loader, epochs)
    lookahead.finish()                  # the model takes the slow weights

The slow copy is kept in float64 on the model's backend.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..nn.module import Module
from .ema import restore_float64, weight_entries
from .optimizer import Optimizer

__all__ = ["Lookahead", "airbench_decay"]


def airbench_decay(total_steps: int, k: int = 5, base: float = 0.95):
    """Airbench's schedule: ``decay(t) = base**k · (t / total_steps)**3`` (0 at the start, 0.77 at the end)."""
    if int(total_steps) <= 0:
        raise ValueError(f"airbench_decay: total_steps must be positive, got {total_steps}")
    total, top = int(total_steps), float(base) ** int(k)
    return lambda step: top * min(step / total, 1.0) ** 3


class Lookahead:
    """A slow copy of ``model``'s weights that they are pulled back to every ``k`` steps (eq. O11).

    Parameters
    ----------
    model : the Module whose parameters and floating buffers take part.
    k : the optimizer steps between two pull-backs.
    decay : a number in [0, 1], or a function of the step count (``step`` = steps taken so far, a multiple
        of ``k`` when it is called) returning one, as :func:`airbench_decay`.

    Attributes: ``steps`` (optimizer steps counted so far), ``slow`` (state-dict name -> float64 array).
    """

    def __init__(self, model: Module, k: int = 5, decay=0.5):
        if not isinstance(model, Module):
            raise TypeError(f"Lookahead follows a minigru Module, got {type(model).__name__}")
        if int(k) != k or int(k) < 1:
            raise ValueError(f"Lookahead: k must be a positive integer, got {k}")
        if not callable(decay) and not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"Lookahead: decay must be in [0, 1], got {decay}")
        self.model, self.k, self.decay = model, int(k), decay
        self.steps = 0
        self.slow = {name: backend.get_array_module(w).asarray(w, dtype=np.float64).copy()
                     for name, w in self._entries().items()}
        self._handle = None

    def _entries(self) -> dict:
        """The model's arrays that take part (parameters and floating buffers), by state-dict name."""
        return weight_entries(self.model, buffers=True)

    def _decay_now(self) -> float:
        value = float(self.decay(self.steps) if callable(self.decay) else self.decay)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"Lookahead: the decay at step {self.steps} is {value}, outside [0, 1]")
        return value

    def _pull(self, decay: float) -> None:
        """(O11): s <- decay·s + (1 - decay)·w, then w <- s (in the model's dtype, in place)."""
        for name, w in self._entries().items():
            s = self.slow[name]
            s += (1.0 - decay) * (w - s)
            w[...] = s

    def step(self) -> None:
        """Count one optimizer step; every ``k``-th one pulls the weights back (call after ``optimizer.step()``)."""
        self.steps += 1
        if self.steps % self.k == 0:
            self._pull(self._decay_now())

    def finish(self) -> None:
        """The end of training: the model takes the slow weights (airbench's last update, decay 1)."""
        self._pull(1.0)

    def attach(self, optimizer: Optimizer) -> "Lookahead":
        """Call :meth:`step` after every ``optimizer.step()`` from now on (replacing an earlier attachment)."""
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"attach() needs a minigru.optim optimizer, got {type(optimizer).__name__}")
        self.detach()
        self._handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())
        return self

    def detach(self) -> None:
        """Stop following the optimizer (the slow weights are kept)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def state_dict(self) -> dict:
        """``{"k", "steps", "slow": {name: float64 array}}`` (the decay, a number or function, is not saved)."""
        return {"k": self.k, "steps": self.steps,
                "slow": {name: backend.to_numpy(s).copy() for name, s in self.slow.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (on the model's backend)."""
        entries = self._entries()
        if set(state["slow"]) != set(entries):
            raise KeyError(f"the saved slow weights name {sorted(set(state['slow']) ^ set(entries))}, which this "
                           "model does not have, or miss them")
        slow = restore_float64(state["slow"], entries, "slow weights")
        self.k, self.steps, self.slow = int(state["k"]), int(state["steps"]), slow

    def __repr__(self):
        return f"Lookahead(k={self.k}, steps={self.steps})"
