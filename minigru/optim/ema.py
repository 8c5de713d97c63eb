"""An exponential moving average (EMA) of a model's weights, as ``torch.optim.swa_utils``'s EMA.

Late in training, SGD's weights jitter around a minimum from batch to batch.
Their running average sits nearer its centre, and often tests a little
better than the last weights (Polyak averaging; airbench's "EMA of weights").
After every optimizer step (docs/user_guide.md eq. O10)::

    a = w                              at the first update
    a = decay·a + (1 - decay)·w        afterwards            (O10)

which is ``torch.optim.swa_utils.AveragedModel(model,
multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=...)`` and its
``update_parameters(model)``. With ``use_buffers=True`` the floating buffers
(batch norm's running mean and variance) are averaged too; otherwise, and for
integer buffers (``num_batches_tracked``) always, the model's own current
buffers are used, as torch keeps them "in sync with the source model".

The training loop need not change: ``ema.attach(optimizer)`` updates the
average after every ``optimizer.step()`` (a step post-hook, torch's
``register_step_post_hook``)::

    ema = ExponentialMovingAverage(model, decay=0.99).attach(optimizer)
    Trainer(model, optimizer, loss).fit(train_loader, epochs=10)
    with ema.average_weights():        # the model holds the averaged weights inside the block
        print(trainer.evaluate(test_loader))

The average is kept in float64 whatever the model's dtype: with a decay of
0.999 each update moves it by a thousandth of the difference, which float32's
7 digits would round away.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import backend
from ..nn.module import Module
from .optimizer import Optimizer

__all__ = ["ExponentialMovingAverage"]


def weight_entries(model: Module, buffers: bool = True) -> dict:
    """``model``'s parameter arrays and, with ``buffers``, its floating buffers (batch norm's running
    statistics), by state-dict name; looked up anew at each call, since buffers get replaced. What a
    weight average (here) or Lookahead (:mod:`minigru.optim.lookahead`) follows."""
    entries = {name: p.data for name, p in model.named_parameters()}
    if buffers:
        entries.update((name, b) for name, b in model.named_buffers() if np.dtype(b.dtype).kind == "f")
    return entries


def restore_float64(saved: dict, entries: dict, what: str) -> dict:
    """The ``saved`` arrays (by state-dict name) as float64 copies on the backend of the same-named arrays of
    ``entries`` (:func:`weight_entries`); a ValueError naming ``what`` and the shapes where one differs."""
    restored = {}
    for name, value in saved.items():
        like = entries[name]
        if tuple(np.shape(value)) != tuple(like.shape):
            raise ValueError(f"the saved {what} of {name!r}: shape {tuple(np.shape(value))}, the model's "
                             f"{tuple(like.shape)}")
        restored[name] = backend.to_backend(np.asarray(value), backend.backend_of(like), dtype=np.float64).copy()
    return restored


class ExponentialMovingAverage:
    """The running average ``a = decay·a + (1 - decay)·w`` of ``model``'s weights (eq. O10).

    Parameters
    ----------
    model : the Module whose parameters (and, with ``use_buffers``, floating buffers) are averaged.
    decay : in [0, 1); the average forgets with a time constant of about ``1 / (1 - decay)`` updates.
    use_buffers : also average floating buffers (batch norm's running statistics), as torch's flag.

    Attributes: ``n_averaged`` (updates so far), ``average`` (name -> float64 array, the state-dict
    keys of the averaged entries).
    """

    def __init__(self, model: Module, decay: float = 0.999, use_buffers: bool = False):
        if not isinstance(model, Module):
            raise TypeError(f"ExponentialMovingAverage averages a minigru Module, got {type(model).__name__}")
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ExponentialMovingAverage: decay must be in [0, 1), got {decay}")
        self.model = model
        self.decay = float(decay)
        self.use_buffers = bool(use_buffers)
        self.n_averaged = 0
        self.average: dict = {}
        self._handle = None

    def _averaged_entries(self) -> dict:
        """The model's arrays that are averaged, by state-dict name."""
        return weight_entries(self.model, self.use_buffers)

    def update(self) -> None:
        """Fold the model's current weights into the average (call it after each ``optimizer.step()``)."""
        entries = self._averaged_entries()
        if self.n_averaged == 0 or set(entries) != set(self.average):
            self.average = {name: w.astype(np.float64, copy=True) for name, w in entries.items()}
        else:
            rate = 1.0 - self.decay
            for name, w in entries.items():
                a = self.average[name]
                a += rate * (w - a)              # (O10) torch's lerp: a + (1 - decay)·(w - a)
        self.n_averaged += 1

    def attach(self, optimizer: Optimizer) -> "ExponentialMovingAverage":
        """Update after every ``optimizer.step()`` from now on (replacing an earlier attachment); returns self."""
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"attach() needs a minigru.optim optimizer, got {type(optimizer).__name__}")
        self.detach()
        self._handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.update())
        return self

    def detach(self) -> None:
        """Stop following the optimizer (the average is kept)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def copy_to(self, model: Module | None = None) -> None:
        """Write the average into ``model`` (default: the averaged model), in its dtype and on its backend."""
        if self.n_averaged == 0:
            raise RuntimeError("ExponentialMovingAverage has no average yet: call update() (or attach it to the "
                               "optimizer and train) first")
        (self.model if model is None else model).load_state_dict(self.average, strict=False)

    @contextlib.contextmanager
    def average_weights(self):
        """Inside the ``with`` block the model holds the averaged weights; its own come back afterwards."""
        saved = {name: backend.to_numpy(w).copy() for name, w in self._averaged_entries().items()}
        self.copy_to()
        try:
            yield self.model
        finally:
            self.model.load_state_dict(saved, strict=False)

    def state_dict(self) -> dict:
        """``{"decay", "use_buffers", "n_averaged", "average": {name: float64 array}}``: arrays and numbers only."""
        return {"decay": self.decay, "use_buffers": self.use_buffers, "n_averaged": self.n_averaged,
                "average": {name: backend.to_numpy(a).copy() for name, a in self.average.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (on the model's backend)."""
        use_buffers, self.use_buffers = self.use_buffers, bool(state["use_buffers"])
        try:
            entries = self._averaged_entries()
        finally:
            self.use_buffers = use_buffers
        for name in state["average"]:
            if name not in entries:
                raise KeyError(f"the saved average has {name!r}, which this model does not average")
        average = restore_float64(state["average"], entries, "average")
        self.decay, self.use_buffers = float(state["decay"]), bool(state["use_buffers"])
        self.n_averaged, self.average = int(state["n_averaged"]), average

    def __repr__(self):
        return (f"ExponentialMovingAverage(decay={self.decay}, use_buffers={self.use_buffers}, "
                f"n_averaged={self.n_averaged})")
