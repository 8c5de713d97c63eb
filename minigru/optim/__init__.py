"""Optimizers, gradient clipping and learning-rate schedules, with PyTorch's names and update rules.

>>> from minigru import optim
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)   # doctest: +SKIP
>>> sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=1000)   # doctest: +SKIP
>>> ema = optim.ExponentialMovingAverage(model, decay=0.99).attach(opt)        # doctest: +SKIP

Each update is written out, with its equation number, in docs/user_guide.md
(eqs. O1-O11 and S1-S7), and tested against ``torch.optim`` step by step.
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_, get_total_norm
from .ema import ExponentialMovingAverage
from .lookahead import Lookahead
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_", "clip_grad_value_", "get_total_norm",
           "ExponentialMovingAverage", "Lookahead", "lr_scheduler"]
