"""minigru: GRUs and convolutions with hand-written backward passes, on NumPy or CuPy.

Everything is computed by explicit forward *and* backward code (no autograd),
and every backward pass is verified by :mod:`minigru.gradcheck`.

Sub-packages: :mod:`minigru.backend` (NumPy/CuPy), :mod:`minigru.engine` (the elementwise engine:
NumPy, or numba with ``minigru[fast]``), :mod:`minigru.functional`
(pure kernels), :mod:`minigru.nn` (layers), :mod:`minigru.gradcheck`; the
data, optim, models and train packages are imported on first use.
Importing minigru imports NumPy and nothing else optional.
"""
from . import backend, engine, functional, gradcheck, nn
from .backend import get_array_module, get_backend, set_backend, to_backend, to_numpy, use_backend
from .engine import get_engine, set_engine, use_engine

__version__ = "0.1.0"

__all__ = ["backend", "engine", "functional", "gradcheck", "nn", "get_array_module", "get_backend", "set_backend",
           "to_backend", "to_numpy", "use_backend", "get_engine", "set_engine", "use_engine", "__version__"]


def __getattr__(name):
    # Heavier sub-packages load on first access: `minigru.data`, `minigru.models`, ...
    import importlib
    if name in {"data", "optim", "models", "train", "interop", "interpret", "classroom", "cli"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minigru' has no attribute {name!r}")
