"""Parameter, Module and containers: the small object model every layer shares.

A layer is a :class:`Module` that

* keeps its trainable arrays as :class:`Parameter` attributes (``self.weight``),
  each with ``.data`` and a same-shaped ``.grad``;
* computes ``forward(*inputs)`` with a functional kernel from
  :mod:`minigru.functional` and keeps the kernel's ``cache`` for later;
* computes ``backward(dout) -> dx`` from that cache, **adds** the parameter
  gradients into ``param.grad`` (so gradients of several batches can be
  accumulated, as in PyTorch) and returns the gradient of its input(s).

``backward`` consumes the cache (as PyTorch frees its graph), so each
``forward`` allows one ``backward``. Inside ``with no_grad():`` layers keep
no cache at all, which saves memory during evaluation.

Names follow PyTorch (``named_parameters``, ``state_dict``, ``train``/``eval``)
so that ``state_dict`` keys and shapes are the same as torch's.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Iterator, NamedTuple

import numpy as np

from .. import backend

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "no_grad", "is_grad_enabled"]

_grad_enabled = True


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():`` (layers then keep no backward cache)."""
    return _grad_enabled


@contextlib.contextmanager
def no_grad():
    """Run forward passes without keeping caches for backward (evaluation, inference)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape, dtype and backend).

    ``grad`` starts at zero; ``Module.backward`` adds into it and
    ``Module.zero_grad()`` (or an optimizer's) clears it.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        backend.backend_of(data)  # only NumPy/CuPy arrays
        self.data = data
        xp = backend.get_array_module(data)
        self.grad = xp.zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, backend={backend.backend_of(self.data)})"


class LoadResult(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of layers and models (see the module docstring for the contract)."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------- attributes
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ before assigning attributes")
        for store in (self._parameters, self._buffers, self._modules):
            if name in store and not isinstance(value, (Parameter, Module)):
                if store is self._buffers:
                    store[name] = value
                    return
                if value is None:
                    store[name] = None
                    return
                raise TypeError(f"cannot assign {type(value).__name__} to {name!r}: it is a "
                                f"{'Parameter' if store is self._parameters else 'Module'}; "
                                f"assign into {name}.data instead")
        if isinstance(value, Parameter):
            self._discard(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._discard(name)
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def _discard(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):  # only reached when normal lookup fails
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        self._discard(name)

    def register_buffer(self, name: str, array) -> None:
        """Keep a non-trainable array (e.g. BatchNorm's running mean) in ``state_dict`` and ``to()``."""
        self._discard(name)
        self._buffers[name] = array

    # ------------------------------------------------------------ forward/back
    def __call__(self, *inputs, **kwargs):
        return self.forward(*inputs, **kwargs)

    def forward(self, *inputs):
        raise TypeError(f"{type(self).__name__} defines no forward(); a layer implements "
                        "forward(*inputs) and backward(dout)")

    def backward(self, dout):
        raise TypeError(f"{type(self).__name__} defines no backward(dout)")

    def _save_cache(self, cache) -> None:
        """Keep ``cache`` for ``backward`` unless gradients are disabled."""
        object.__setattr__(self, "_cache", cache if _grad_enabled else None)

    def _pop_cache(self):
        """Return and forget the cache of the last ``forward``; a clear error if there is none."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a forward() first (each forward allows one "
                               "backward, and forward inside no_grad() keeps nothing to differentiate)")
        object.__setattr__(self, "_cache", None)
        return cache

    # ------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, p in mod._parameters.items():
                if p is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        for mod_prefix, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self) -> Iterator[object]:
        for _, b in self.named_buffers():
            yield b

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return int(sum(p.size for p in self.parameters()))

    # --------------------------------------------------------------- training
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero."""
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active, batch norm uses batch statistics); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    # ------------------------------------------------------------- state dict
    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameters and buffers by dotted name (torch's keys); the arrays themselves, not copies."""
        out = OrderedDict()
        for mod_prefix, mod in self.named_modules():
            for store in (mod._parameters, mod._buffers):
                for name, v in store.items():
                    if v is None:
                        continue
                    key = f"{mod_prefix}.{name}" if mod_prefix else name
                    out[key] = v.data if isinstance(v, Parameter) else v
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadResult:
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Values may be NumPy or CuPy arrays, or anything ``numpy.asarray`` accepts
        (a CPU ``torch.Tensor`` too); they are cast to each target's dtype and
        moved to its backend. Shapes must match exactly. With ``strict`` (the
        default), missing or unexpected keys raise a KeyError naming them.
        """
        targets = {}
        for mod_prefix, mod in self.named_modules():
            for store in (mod._parameters, mod._buffers):
                for name, v in store.items():
                    if v is not None:
                        targets[f"{mod_prefix}.{name}" if mod_prefix else name] = (mod, store, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for key, (mod, store, name) in targets.items():
            if key not in state_dict:
                continue
            current = store[name].data if isinstance(store[name], Parameter) else store[name]
            value = state_dict[key]
            if not backend.is_array(value):
                value = _host_array(value, key)
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict: {key!r} has shape {tuple(value.shape)} in the state dict "
                                 f"but {tuple(current.shape)} in the module")
            new = backend.to_backend(value, backend.backend_of(current), dtype=current.dtype)
            if isinstance(store[name], Parameter):
                current[...] = new
            else:
                store[name] = new.copy() if new is value else new
        return LoadResult(missing, unexpected)

    # ------------------------------------------------------- device and dtype
    def to(self, target) -> "Module":
        """Move to a backend (``"numpy"``/``"cupy"``) or cast floating arrays to a dtype; returns self.

        Integer buffers (such as ``num_batches_tracked``) keep their dtype.
        """
        if isinstance(target, str) and target in backend.BACKENDS:
            def convert(a):
                return backend.to_backend(a, target)
        else:
            dtype = np.dtype(target)
            if dtype.kind != "f":
                raise TypeError(f"module.to() takes a backend name {backend.BACKENDS} or a floating dtype, got {target!r}")

            def convert(a):
                return a.astype(dtype) if a.dtype.kind == "f" and a.dtype != dtype else a
        for mod in self.modules():
            object.__setattr__(mod, "_cache", None)  # caches belong to the old arrays
            for p in mod._parameters.values():
                if p is not None:
                    p.data, p.grad = convert(p.data), convert(p.grad)
            for name, b in mod._buffers.items():
                if b is not None:
                    mod._buffers[name] = convert(b)
        return self

    def double(self) -> "Module":
        """Cast floating parameters and buffers to float64 (for gradient checks)."""
        return self.to(np.float64)

    def float(self) -> "Module":
        """Cast floating parameters and buffers to float32 (for training)."""
        return self.to(np.float32)

    @property
    def backend(self) -> str:
        """Backend of the parameters (``"numpy"`` for a module without any)."""
        for p in self.parameters():
            return backend.backend_of(p.data)
        for b in self.buffers():
            return backend.backend_of(b)
        return "numpy"

    # ------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _host_array(value, key):
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as err:
        raise TypeError(f"load_state_dict: {key!r} is a {type(value).__name__}, not an array") from err


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... as in PyTorch, so state dict
    keys look like ``"0.weight"``.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules; argument {i} is a {type(m).__name__}")
            self._modules[str(i)] = m

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout):
        for m in reversed(self._modules.values()):
            dout = m.backward(dout)
        return dout

    def append(self, module: Module) -> "Sequential":
        self._modules[str(len(self._modules))] = module
        return self

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of sub-modules, registered so that their parameters are found (names ``"0"``, ``"1"``, ...)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, not {type(module).__name__}")
        self._modules[str(len(self._modules))] = module
        return self

    def __getitem__(self, idx):
        return list(self._modules.values())[idx]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
