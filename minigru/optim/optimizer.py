"""The Optimizer base class: parameter groups, per-parameter state, and saving/restoring both.

An optimizer holds a list of *parameter groups*, as in PyTorch::

    opt = Adam([{"params": weights},                      # uses the defaults below
                {"params": biases, "weight_decay": 0.0}],  # overrides one of them
               lr=1e-3, weight_decay=1e-4)
    opt.param_groups[0]["lr"]                              # what LR schedulers change

Each group is a dict with a ``"params"`` list and every hyper-parameter
(missing ones are filled in from the constructor's defaults). Per-parameter
state (momentum buffers, Adam's moments) lives in ``self.state[param]``.

``state_dict()`` returns plain arrays and numbers only (parameters are
referred to by their position across the groups, as in torch), so it can be
written to an ``.npz`` file without pickle; ``load_state_dict()`` puts the
arrays back on each parameter's backend with its dtype.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..nn.module import Module, Parameter

__all__ = ["Optimizer", "RemovableHandle"]


class RemovableHandle:
    """What ``register_step_post_hook`` returns: ``handle.remove()`` unregisters the hook (twice is harmless)."""

    def __init__(self, hooks: dict, hook_id: int):
        self._hooks, self.id = hooks, hook_id

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


class Optimizer:
    """Base class of SGD, Adam and AdamW (see the module docstring).

    Subclasses define ``_update(param, group, state)`` for one
    parameter, and may override ``_check_group(group)`` to validate
    hyper-parameters. ``step()`` calls ``_update`` for every parameter.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Parameter, dict] = {}
        # Work arrays reused every step (not part of the state; rebuilt freely).
        self._scratch: dict[Parameter, list] = {}
        # Functions called after every step (weight averaging, logging): id -> hook(optimizer, args, kwargs).
        self._step_post_hooks: dict[int, object] = {}
        self._next_hook_id = 0
        if isinstance(params, Module):
            raise TypeError(f"{type(self).__name__} takes parameters, not a Module: pass model.parameters()")
        if isinstance(params, Parameter):
            params = [params]
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list "
                             "(did model.parameters() run out? it is a generator: call it again)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---------------------------------------------------------------- groups
    def add_param_group(self, group: dict) -> None:
        """Add a group ``{"params": [...], **hyper_parameters}``; missing hyper-parameters take the defaults."""
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group is a dict with a 'params' entry, got {type(group).__name__} "
                            "(do not mix Parameters and group dicts in one list)")
        if "params" not in group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = group["params"]
        if isinstance(params, Module):
            raise TypeError("a parameter group's 'params' must be parameters, not a Module: use module.parameters()")
        params = [params] if isinstance(params, Parameter) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers update Parameters (objects with .data and .grad); item {i} of a "
                                f"parameter group is a {type(p).__name__}. Pass model.parameters()")
        if len(set(map(id, params))) != len(params):
            raise ValueError("a parameter group lists the same Parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)} for {type(self).__name__}; "
                             f"it knows {sorted(self.defaults)}")
        new_group = {"params": params}
        for key, default in self.defaults.items():
            new_group[key] = group.get(key, default)
        self._check_group(new_group)
        self.param_groups.append(new_group)

    def _check_group(self, group: dict) -> None:
        """Raise ValueError for impossible hyper-parameters (overridden by subclasses)."""
        if not group["lr"] >= 0:
            raise ValueError(f"learning rate must be >= 0, got {group['lr']}")

    # --------------------------------------------------------------- stepping
    def zero_grad(self) -> None:
        """Set the gradient of every parameter this optimizer updates to zero."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.fill(0)

    def step(self) -> None:
        """Update every parameter in place from its ``grad`` (one optimisation step)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad.shape != p.data.shape:
                    raise ValueError(f"a parameter of shape {p.data.shape} has a gradient of shape {p.grad.shape}")
                state = self.state.setdefault(p, {})
                for value in state.values():
                    if backend.is_array(value) and type(value) is not type(p.data):
                        raise backend.BackendMismatchError(
                            f"the optimizer's state is on {backend.backend_of(value)} but a parameter is on "
                            f"{backend.backend_of(p.data)}: the model was moved after the optimizer was built. "
                            "Build the optimizer after model.to(...) (or move it with load_state_dict(state_dict()))")
                self._update(p, group, state)
        for hook in list(self._step_post_hooks.values()):
            hook(self, (), {})

    def register_step_post_hook(self, hook) -> "RemovableHandle":
        """Call ``hook(optimizer, args, kwargs)`` after every :meth:`step`, as torch's method of that name.

        This is how :class:`~minigru.optim.ExponentialMovingAverage` follows a
        training loop without changes to the loop. ``args`` and ``kwargs`` are
        those of ``step()`` (always empty here). Returns a handle whose
        ``remove()`` unregisters the hook.
        """
        if not callable(hook):
            raise TypeError(f"a step hook must be callable as hook(optimizer, args, kwargs), got "
                            f"{type(hook).__name__}")
        hook_id = self._next_hook_id
        self._next_hook_id += 1
        self._step_post_hooks[hook_id] = hook
        return RemovableHandle(self._step_post_hooks, hook_id)

    def _update(self, p: Parameter, group: dict, state: dict) -> None:
        raise NotImplementedError

    def _work(self, p: Parameter, count: int) -> list:
        """``count`` scratch arrays shaped like ``p`` (same backend and dtype), allocated once and reused."""
        bufs = self._scratch.get(p)
        if bufs is None or len(bufs) < count or bufs[0].dtype != p.data.dtype \
                or backend.backend_of(bufs[0]) != backend.backend_of(p.data):
            xp = backend.get_array_module(p.data)
            bufs = [xp.empty_like(p.data) for _ in range(count)]
            self._scratch[p] = bufs
        return bufs

    # ------------------------------------------------------------ state dict
    def _indexed_params(self) -> list[Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered in group order (0, 1, 2, ...), as torch does.
        Arrays are copies, so the dict is a snapshot.
        """
        index = {id(p): i for i, p in enumerate(self._indexed_params())}
        groups = []
        for group in self.param_groups:
            saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            saved["params"] = [index[id(p)] for p in group["params"]]
            groups.append(saved)
        state = {}
        for p, entries in self.state.items():
            if id(p) in index and entries:
                state[index[id(p)]] = {k: (v.copy() if backend.is_array(v) else v) for k, v in entries.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and state saved by :meth:`state_dict` (keys may be ints or strings).

        The optimizer must have been built over the same parameters in the
        same order; state arrays are moved to each parameter's backend and cast
        to its dtype.
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"the saved optimizer has {len(groups)} parameter group(s), this one has "
                             f"{len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {i} holds {len(saved['params'])} parameters in the saved "
                                 f"optimizer but {len(group['params'])} here; was it built for another model?")
        params = self._indexed_params()
        new_state = {}
        for key, entries in state_dict["state"].items():
            index = int(key)
            if not 0 <= index < len(params):  # a negative index would silently pick a parameter from the end
                raise IndexError(f"the saved optimizer state names parameter {key!r}, but this optimizer has "
                                 f"parameters 0 to {len(params) - 1}")
            p = params[index]
            new_state[p] = {name: self._restore_value(value, p, name, key) for name, value in entries.items()}
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = new_state

    @staticmethod
    def _restore_value(value, p: Parameter, name: str, key):
        """A saved state entry: numbers (Adam's step count) stay numbers; arrays go to ``p``'s backend and dtype."""
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, numbers.Number):
            return value
        array = value if backend.is_array(value) else np.asarray(value)
        if array.ndim == 0:
            return array.item()
        if tuple(array.shape) != tuple(p.data.shape):
            raise ValueError(f"optimizer state {name!r} of parameter {key} has shape {tuple(array.shape)}, "
                             f"but the parameter has shape {tuple(p.data.shape)}")
        moved = backend.to_backend(array, backend.backend_of(p.data), dtype=p.data.dtype)
        return moved.copy() if moved is value else moved

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"
