"""DataParallel: one batch split over copies of a model, each run by its own thread.

Why threads help a NumPy model at all: the time of a training step goes to
matrix products and elementwise loops, and NumPy lets go of Python's global
lock inside both. Two threads, each with one BLAS thread and its own half of
the batch, keep two cores busy for the whole step, where one model on two BLAS
threads only uses the second core inside the matrix products (the im2col
copies and the elementwise passes run on one). On the 2-core AMD EPYC VM the
``cnn-gru-hour`` step took 2.25 s for 256 images on one core, 1.66 s with two
BLAS threads and 1.28 s as two replicas of 128 images (docs/performance.md,
"Data parallelism over threads").

What a replica is (as in ``torch.nn.DataParallel``):

* a deep copy of the module whose parameters are **the module's own arrays**
  (re-linked before every forward, so the optimizer's updates and
  ``load_state_dict`` reach every replica) and whose gradients are its own;
* its buffers (batch norm's running statistics) are copies of the module's,
  refreshed before every forward: the statistics the replicas see are the
  module's, and only the module's own chunk updates them;
* its dropout masks come from a random stream of its own, seeded before
  every forward in training mode with a number drawn from the module's
  generator (evaluation draws nothing, as dropout is then off): no two
  chunks draw the same masks, and a run replays exactly from the module's
  generator state (a resumed checkpoint, a gradient check).

``forward(x)`` splits ``x`` along the batch axis into ``replicas`` nearly equal
chunks (fewer for a batch smaller than that: a chunk holds at least one
sample), runs chunk 0 on the module in the calling thread and the others on
the replicas, and returns the outputs concatenated in batch order.
``backward(dout)`` splits ``dout`` the same way, runs every chunk's backward,
then adds each replica's parameter gradients into the module's
(``module.weight.grad`` then holds the gradient of the whole batch, as if one
model had seen it) and returns ``dx`` concatenated.

What changes against one model on the whole batch: a batch norm normalises
each chunk with that chunk's statistics (torch's DataParallel does the same;
the batch is then a set of "ghost batches"), so a recipe that uses replicas
is a different recipe, not just a faster run of the same one. Layers with no
batch statistics give the whole batch's gradient up to rounding.
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .. import backend
from .module import Module

__all__ = ["DataParallel"]


class DataParallel(Module):
    """Split each batch over ``replicas`` copies of ``module``, one thread each (see the module docstring).

    ``module`` is registered as ``self.module`` (torch's name): ``parameters()``,
    ``state_dict()`` and ``train()``/``eval()`` are those of the module, keys
    prefixed with ``module.``. Optimizers, checkpoints and weight averages
    should hold ``module`` itself, which is what a :class:`~minigru.train.Trainer`
    with ``replicas`` does.

    Shapes: ``forward(x)``: x (N, ...) -> out (N, ...), the module's output for
    every sample; ``backward(dout)``: dout (N, ...) -> dx (N, ...).
    """

    def __init__(self, module: Module, replicas: int = 2):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel wraps a Module, got {type(module).__name__}")
        if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        self.module = module
        self.replicas = int(replicas)
        object.__setattr__(self, "_copies", [])      # the replicas after the module (not registered: no parameters)
        object.__setattr__(self, "_threads", [])     # one worker thread per replica, started when first needed
        object.__setattr__(self, "_sizes", None)     # chunk sizes of the last forward, for its backward

    # ------------------------------------------------------------ replicas
    def _copies_for(self, chunks: int) -> list:
        """The module, then ``chunks - 1`` replicas in step with it."""
        names = [name for name, _ in self.module.named_parameters()]
        if self._copies and [n for n, _ in self._copies[0].named_parameters()] != names:
            self._copies.clear()                     # the module changed shape: copy it afresh
        while len(self._copies) < chunks - 1:
            self._copies.append(self._new_copy())
        for replica in self._copies[:chunks - 1]:
            _sync(self.module, replica)
        return [self.module] + self._copies[:chunks - 1]

    def _new_copy(self) -> Module:
        # Share the parameter arrays in the copy rather than duplicating them (they are re-linked anyway).
        memo = {id(p.data): p.data for p in self.module.parameters()}
        replica = copy.deepcopy(self.module, memo)
        for module in replica.modules():
            object.__setattr__(module, "_cache", None)
        for p in replica.parameters():
            p.grad = backend.get_array_module(p.data).zeros_like(p.data)
        return replica

    def __getstate__(self):
        # A copy (copy.deepcopy, as gradcheck.check_module makes) gets fresh replicas and threads of its own.
        state = dict(self.__dict__)
        state.update(_copies=[], _threads=[], _sizes=None)
        return state

    def _run(self, calls):
        """Run ``calls`` (one per chunk: the module's in this thread, replica k's in its own thread, so that its
        forward and backward meet the same per-thread work arrays) and return their results in order."""
        while len(self._threads) < len(calls) - 1:
            self._threads.append(ThreadPoolExecutor(1, thread_name_prefix=f"replica{len(self._threads) + 1}"))
        futures = [thread.submit(call) for thread, call in zip(self._threads, calls[1:])]
        try:
            first = calls[0]()
        finally:
            wait(futures)                            # never leave a replica running behind an error
        return [first] + [f.result() for f in futures]

    # ------------------------------------------------------- forward, back
    def forward(self, x):
        """x (N, ...) -> the module's outputs (N, ...), each chunk of the batch on its own replica."""
        n = int(x.shape[0])
        chunks = max(1, min(self.replicas, n))
        sizes = [n // chunks + (1 if i < n % chunks else 0) for i in range(chunks)]
        starts = np.cumsum([0] + sizes)
        models = self._copies_for(chunks)
        outs = self._run([(lambda m=m, a=a, b=b: m(x[a:b])) for m, a, b in zip(models, starts, starts[1:])])
        object.__setattr__(self, "_sizes", sizes)
        return outs[0] if chunks == 1 else backend.get_array_module(outs[0]).concatenate(outs, axis=0)

    def backward(self, dout):
        """dout (N, ...) -> dx (N, ...); the module's ``.grad`` gains the whole batch's parameter gradients."""
        sizes = self._sizes
        if sizes is None:
            raise RuntimeError("DataParallel.backward() needs a forward() first (each forward allows one backward)")
        if int(dout.shape[0]) != sum(sizes):
            raise ValueError(f"DataParallel.backward: dout has {dout.shape[0]} samples, the forward had {sum(sizes)}")
        object.__setattr__(self, "_sizes", None)
        starts = np.cumsum([0] + sizes)
        models = [self.module] + self._copies[:len(sizes) - 1]
        try:
            dxs = self._run([(lambda m=m, a=a, b=b: m.backward(dout[a:b])) for m, a, b in zip(models, starts, starts[1:])])
        except BaseException:
            for replica in models[1:]:               # no half-summed gradient may reach the next step
                replica.zero_grad()
            raise
        for replica in models[1:]:                   # the whole batch's gradient lands in the module's .grad
            for p, q in zip(self.module.parameters(), replica.parameters()):
                p.grad += q.grad
                q.grad.fill(0)
        if any(dx is None for dx in dxs):
            return None
        return dxs[0] if len(dxs) == 1 else backend.get_array_module(dxs[0]).concatenate(dxs, axis=0)

    def extra_repr(self) -> str:
        return f"replicas={self.replicas}"


def _sync(module: Module, replica: Module) -> None:
    """Bring ``replica`` in step with ``module``: the same parameter arrays, copies of its buffers, its mode,
    and random streams seeded from the module's."""
    for m, r in zip(module.modules(), replica.modules()):
        object.__setattr__(r, "training", m.training)
        for name, value in vars(m).items():
            if m.training and isinstance(value, np.random.Generator):   # dropout's masks (generators live on the host)
                object.__setattr__(r, name, np.random.default_rng(int(value.integers(2**63))))
        for name, p in m._parameters.items():
            q = r._parameters[name]
            if p is None or q is None:
                continue
            q.data = p.data
            if q.grad.shape != p.data.shape or q.grad.dtype != p.data.dtype or type(q.grad) is not type(p.data):
                q.grad = backend.get_array_module(p.data).zeros_like(p.data)   # the module was moved or cast
        for name, b in m._buffers.items():
            r._buffers[name] = None if b is None else b.copy()
