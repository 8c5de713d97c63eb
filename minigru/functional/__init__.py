"""Pure functional kernels: ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache) -> grads``.

They hold no state, take their array module from their inputs
(``xp = get_array_module(x)``), allocate with the input's dtype, and cite the
equations of ``docs/derivations.md`` that they implement.
"""
from .activations import *  # noqa: F401,F403  (each module lists its public kernels in __all__)
from .linear import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .conv_naive import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .gru import *  # noqa: F401,F403
from .lstm import *  # noqa: F401,F403
from .convgru import *  # noqa: F401,F403
from .regression_loss import *  # noqa: F401,F403
from .renet import *  # noqa: F401,F403
