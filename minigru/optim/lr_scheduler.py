"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s names, arguments and stepping rules.

A scheduler changes ``optimizer.param_groups[i]["lr"]``. Building it sets
the learning rate for step 0; each ``scheduler.step()`` (after
``optimizer.step()``) moves to the next epoch, or the next batch for
:class:`OneCycleLR`::

    sched = CosineAnnealingLR(opt, T_max=30)
    for epoch in range(30):
        train_one_epoch(...)         # uses opt.param_groups[0]["lr"]
        sched.step()

Every schedule is computed in closed form from the starting rates
(``base_lrs``, each group's ``"initial_lr"``) and the step counter
``last_epoch`` (docs/user_guide.md eqs. S1-S7). These are the formulas torch
uses for ``step(epoch)``; its plain ``step()`` reaches the same values by
repeated multiplication, so the two agree to rounding (tested against torch).
One consequence: a learning rate set by hand between steps is overwritten
at the next ``step()``.

``state_dict()`` holds only numbers, strings and lists (never the
optimizer or lambda functions), so it can be saved without pickle.
"""
from __future__ import annotations

import copy
import math
from bisect import bisect_right

from .optimizer import Optimizer

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "LinearLR",
           "CosineAnnealingLR", "OneCycleLR", "SequentialLR"]


class LRScheduler:
    """Base class: subclasses define ``get_lr()``, the learning rate of each group at step ``last_epoch``."""

    _not_saved = ("optimizer",)

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs a minigru.optim optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr': to resume a schedule, load the "
                                   "optimizer's state_dict first, or pass last_epoch=-1 for a fresh one")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()  # sets the learning rate of step 0 (last_epoch becomes 0)

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (one batch for per-batch schedules) and set each group's ``"lr"``."""
        self._step_count += 1
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the latest ``step()``, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (and functions): numbers, strings and lists."""
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k not in self._not_saved}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (the optimizer's own state is loaded separately)."""
        self.__dict__.update({k: copy.deepcopy(v) for k, v in state_dict.items() if k not in self._not_saved})

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class LambdaLR(LRScheduler):
    """lr = base_lr · lr_lambda(epoch) (eq. S1); one function, or one per parameter group.

    The functions are not saved by ``state_dict()``: rebuild the scheduler with
    them, then load the state.
    """

    _not_saved = ("optimizer", "lr_lambdas")

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(f"expected {len(optimizer.param_groups)} lr_lambdas (one per parameter group), "
                                 f"got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        if not all(callable(f) for f in self.lr_lambdas):
            raise TypeError("lr_lambda must be a function of the epoch (or a list of them)")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """lr = base_lr · gamma^⌊epoch / step_size⌋: decay by ``gamma`` every ``step_size`` epochs (eq. S2)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch=-1):
        if int(step_size) <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr = base_lr · gamma^(number of milestones ≤ epoch): decay at chosen epochs (eq. S3)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch=-1):
        self.milestones = sorted(int(m) for m in milestones)  # a repeated milestone decays twice, as in torch
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        passed = bisect_right(self.milestones, self.last_epoch)
        return [base * self.gamma ** passed for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """lr = base_lr · gamma^epoch (eq. S4)."""

    def __init__(self, optimizer, gamma: float, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear ramp of the factor from ``start_factor`` to ``end_factor`` over ``total_iters`` steps (eq. S5).

    ``lr = base_lr · (s + (e - s) · min(epoch, total_iters) / total_iters)``;
    the usual warm-up is ``LinearLR(opt, start_factor=0.1, total_iters=5)``,
    followed by another schedule through :class:`SequentialLR`.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if not 0 < start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor}")
        if int(total_iters) <= 0:
            raise ValueError(f"total_iters must be a positive integer, got {total_iters}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = η_min + (base_lr - η_min) · (1 + cos(π · epoch / T_max)) / 2 (eq. S6).

    Falls from ``base_lr`` to ``eta_min`` over ``T_max`` steps (and, like
    torch's, rises again if stepped beyond).
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch=-1):
        if T_max <= 0:
            raise ValueError(f"T_max must be positive, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]


def _per_group(name, optimizer, value) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name} has {len(value)} values but the optimizer has "
                             f"{len(optimizer.param_groups)} parameter groups")
        return list(value)
    return [value] * len(optimizer.param_groups)


def _anneal(start, end, pct, strategy):
    """From ``start`` (pct 0) to ``end`` (pct 1): half a cosine wave, or a straight line."""
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018), stepped once per *batch* (eq. S7).

    The learning rate rises from ``max_lr / div_factor`` to ``max_lr`` during
    the first ``pct_start`` of the ``total_steps``, then falls to
    ``max_lr / (div_factor · final_div_factor)``. With ``three_phase=True`` it
    first falls back to the starting rate (symmetric to the rise) and only
    then anneals to the minimum. With ``cycle_momentum`` the momentum (SGD's
    ``momentum``, Adam's β1) moves the opposite way, between
    ``max_momentum`` and ``base_momentum``.

    Give ``total_steps``, or ``epochs`` and ``steps_per_epoch``
    (``len(train_loader)``); stepping more than ``total_steps`` times raises.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
            if int(epochs) <= 0 or int(steps_per_epoch) <= 0:
                raise ValueError(f"epochs and steps_per_epoch must be positive, got {epochs} and {steps_per_epoch}")
            total_steps = int(epochs) * int(steps_per_epoch)
        if int(total_steps) <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"pct_start must be between 0 and 1, got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps = int(total_steps)
        self.anneal_strategy = anneal_strategy
        up = float(pct_start * self.total_steps) - 1
        if three_phase:  # (phase end step, lr from, lr to, momentum from, momentum to)
            self.phases = [[up, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                            "base_momentum", "max_momentum"],
                           [self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"]]
        else:
            self.phases = [[up, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                           [self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"]]
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, _per_group("max_lr", optimizer, max_lr)):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("cycle_momentum=True needs an optimizer with momentum (SGD) or betas (Adam)")
            self.use_beta1 = "betas" in optimizer.defaults
            if last_epoch == -1:
                for group, top, bottom in zip(optimizer.param_groups,
                                              _per_group("max_momentum", optimizer, max_momentum),
                                              _per_group("base_momentum", optimizer, base_momentum)):
                    self._set_momentum(group, top)
                    group["max_momentum"], group["base_momentum"] = top, bottom
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR was stepped {step} times but total_steps is {self.total_steps}: make "
                             "total_steps = epochs * len(train_loader) and step it once per batch")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr_from, lr_to, mom_from, mom_to) in enumerate(self.phases):
                if step <= end or i == len(self.phases) - 1:
                    # A phase of zero length (tiny total_steps) counts as finished.
                    pct = (step - start) / (end - start) if end != start else 1.0
                    lrs.append(_anneal(group[lr_from], group[lr_to], pct, self.anneal_strategy))
                    if self.cycle_momentum:
                        self._set_momentum(group, _anneal(group[mom_from], group[mom_to], pct,
                                                          self.anneal_strategy))
                    break
                start = end
        return lrs


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` from its step 0, and so on.

    Typical warm-up then cosine decay::

        warm = LinearLR(opt, start_factor=0.1, total_iters=5)
        cos = CosineAnnealingLR(opt, T_max=45)
        sched = SequentialLR(opt, [warm, cos], milestones=[5])
    """

    _not_saved = ("optimizer", "_schedulers")

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        if not schedulers:
            raise ValueError("SequentialLR needs at least one scheduler")
        if any(s.optimizer is not optimizer for s in schedulers):
            raise ValueError("all schedulers of a SequentialLR must belong to its optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers; got {len(schedulers)} "
                             f"schedulers and {len(milestones)} milestones")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = last_epoch + 1
        # Building the inner schedulers already stepped each of them once; undo that, as torch does.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in self._schedulers:
            s.last_epoch -= 1
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._step_count = 0
        first.step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler.last_epoch = -1  # the next scheduler starts from its own step 0
        scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def get_lr(self):
        return self._schedulers[bisect_right(self._milestones, self.last_epoch)].get_last_lr()

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for s, saved in zip(self._schedulers, state_dict["_schedulers"]):
            s.load_state_dict(saved)
