"""Pure functional kernels: ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache) -> grads``.

They hold no state, take their array module from their inputs
(``xp = get_array_module(x)``), allocate with the input's dtype, and cite the
equations of ``docs/derivations.md`` that they implement.
"""
from .activations import *  # noqa: F401,F403  (each module lists its public kernels in __all__)
