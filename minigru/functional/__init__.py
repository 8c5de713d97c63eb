"""Functional kernels: ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache) -> grads``.

Every kernel takes its array module from its inputs (``xp = get_array_module(x)``),
allocates with the input's dtype, cites the equations of ``docs/derivations.md``
that it implements, and checks each upstream gradient against the shape its
forward produced. A cache is a named tuple or dataclass (``GRUStepCache``,
``GRUCache``, ...) holding what backward needs, under the names of the equations.

The recurrent kernels come in two tiers:

* **Step kernels**, written for reading: ``rnn_step_*``, ``gru_step_*``,
  ``lstm_step_*``, ``convgru_step_*``. One time step, a few lines of NumPy
  that mirror the numbered equations. They hold no state and allocate fresh
  arrays; their caches are immutable named tuples. These are the functions
  students write in the classroom exercises.
* **Fused sequence kernels**, written for speed: ``rnn_forward``,
  ``gru_forward``, ``lstm_forward``, ``convgru_forward`` and their backwards.
  A whole sequence (one layer, one direction) with all input projections in
  one GEMM, the time loop on preallocated column-layout buffers and every
  weight gradient in one GEMM after it (:mod:`minigru.functional._recurrent`).
  They are not stateless: their buffers are borrowed from a per-thread pool
  (:mod:`minigru.functional._workspace`), the output ``hs`` is a view into the
  cache, and backward consumes the cache (gives the buffers back; a second
  backward raises). :func:`release_cache` gives the buffers of a cache that no
  backward will use back, :func:`clear_work_pool` empties the pool.

Between the two, :mod:`minigru.functional.reference` runs whole sequences as a
plain loop over the step kernels (``gru_reference_forward``, ...): slow, obviously
right, compared with the fused kernels by the tests, and used by the layers built
with ``kernel="reference"`` (so that a student's step kernels drive a real GRU).
"""
from .activations import *  # noqa: F401,F403  (each module lists its public kernels in __all__)
from .linear import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .winograd import *  # noqa: F401,F403
from .conv_naive import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from ._recurrent import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .gru import *  # noqa: F401,F403
from .lstm import *  # noqa: F401,F403
from .reference import *  # noqa: F401,F403
from .convgru import *  # noqa: F401,F403
from .regression_loss import *  # noqa: F401,F403
from .renet import *  # noqa: F401,F403
from ._workspace import clear as clear_work_pool  # noqa: F401  (the public name of the pool's reset)
