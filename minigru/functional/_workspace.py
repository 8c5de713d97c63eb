"""Reusable work arrays for the kernels: one small pool per thread.

Why a pool at all? A fresh large NumPy array is fresh memory from the
operating system, and the first write to each 4 KiB page of it costs a page
fault, which is more than the arithmetic done on that page (measured in
docs/performance.md, "What was changed": items 1 and 7). A training step runs the same kernels
with the same shapes again and again, so the kernels keep their *internal*
arrays and reuse them instead of asking for new memory every step.

The pool lends arrays in two ways:

* :func:`scratch` — a named buffer for work that never leaves one call (the
  padded input of a convolution, a GEMM result before it is transposed). The
  same name, shape and dtype give back the same buffer the next time; it stays
  in the pool while it is being used.
* :func:`take` / :func:`give_back` — an array that lives longer than a call,
  from a forward pass until its backward pass has used it (a GRU's gate
  values). It leaves the pool while borrowed and comes back with
  :func:`give_back`.

Both kinds share one budget (:data:`MAX_BYTES`, :data:`MAX_ARRAYS`); when it
is exceeded the least recently used arrays are dropped (and freed by Python as
usual). :func:`clear` drops everything, :func:`stats` says what is held.

The rules that keep reuse safe, i.e. never let a pooled array alias an array
that a caller can see:

1. Arrays returned to the caller (outputs, gradients) are never pooled ones.
2. A scratch buffer is used only inside the function that asked for it, and
   two uses that may be alive at once use different names.
3. Only arrays that nothing else references are given back (backward gives
   back what its forward borrowed, after its last read, and empties the cache
   so that a second backward fails loudly instead of reading recycled memory).

Only NumPy arrays are pooled: CuPy has its own memory pool on the GPU, which
already avoids the cost above, so on CuPy :func:`take` simply allocates and a
scratch buffer is kept per device like on the host.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..backend import get_array_module

__all__ = ["scratch", "take", "give_back", "clear", "stats", "MAX_BYTES", "MAX_ARRAYS"]

MAX_BYTES = 768 * 2**20
"""Most bytes that the idle arrays of one thread's pool may hold."""

MAX_ARRAYS = 96
"""Most arrays that one thread's pool may hold."""


class _Pool(threading.local):
    """Per thread: key -> list of arrays, least recently used key first."""

    def __init__(self):
        self.entries = OrderedDict()
        self.nbytes = 0
        self.count = 0


_pool = _Pool()


def _add(key, array) -> None:
    _pool.entries.setdefault(key, []).append(array)
    _pool.entries.move_to_end(key)
    _pool.nbytes += array.nbytes
    _pool.count += 1


def _pop(key):
    arrays = _pool.entries.get(key)
    if not arrays:
        return None
    array = arrays.pop()
    if not arrays:
        del _pool.entries[key]
    _pool.nbytes -= array.nbytes
    _pool.count -= 1
    return array


def _evict(keep=None) -> None:
    """Drop least recently used arrays until the pool fits its budget (never the entry ``keep``)."""
    for key in list(_pool.entries):
        if key == keep:
            continue
        arrays = _pool.entries[key]
        while arrays and (_pool.nbytes > MAX_BYTES or _pool.count > MAX_ARRAYS):
            dropped = arrays.pop(0)          # the oldest of this key first
            _pool.nbytes -= dropped.nbytes
            _pool.count -= 1
        if not arrays:
            del _pool.entries[key]
        if _pool.nbytes <= MAX_BYTES and _pool.count <= MAX_ARRAYS:
            return


def scratch(tag: str, shape, like, fill=0.0):
    """A reusable work array of ``shape`` with ``like``'s dtype and backend, for use inside one call.

    A new buffer is filled with ``fill``; a reused one holds whatever its last
    user left there, except that regions nobody writes (the border of a padded
    image) keep ``fill``. New buffers of zeros come from ``calloc``, whose
    pages the operating system zeroes lazily, on first touch.
    """
    xp = get_array_module(like)
    key = ("scratch", tag, tuple(shape), like.dtype.str, xp.__name__, str(getattr(like, "device", "")), fill)
    arrays = _pool.entries.get(key)
    if arrays:
        _pool.entries.move_to_end(key)
        return arrays[0]
    buf = xp.zeros(shape, dtype=like.dtype) if fill == 0 else xp.full(shape, fill, dtype=like.dtype)
    _add(key, buf)
    _evict(keep=key)
    return buf


def take(xp, shape, dtype):
    """An uninitialised array to borrow until :func:`give_back`: a pooled one of this shape and
    dtype if there is one, else a new one. On CuPy always a new one (its pool does this job)."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    array = _pop(("work", tuple(shape), np.dtype(dtype).str))
    return xp.empty(shape, dtype=dtype) if array is None else array


def give_back(*arrays) -> None:
    """Return borrowed arrays (or views of them) to the pool; None and CuPy arrays are ignored.

    Only for arrays that nothing outside the kernels references any more.
    """
    for a in arrays:
        if a is None or not isinstance(a, np.ndarray):
            continue
        while isinstance(a.base, np.ndarray):  # a view goes back as the array that owns the memory
            a = a.base
        if not a.flags.owndata:
            continue                           # memory owned by something else (a buffer, mmap): not ours
        key = ("work", a.shape, a.dtype.str)
        if any(kept is a for kept in _pool.entries.get(key, ())):
            continue                           # given back twice: keep one entry, never lend it twice
        _add(key, a)
    _evict()


def clear() -> None:
    """Drop every pooled array of this thread (memory is freed once nothing else references it)."""
    _pool.entries.clear()
    _pool.nbytes = 0
    _pool.count = 0


def stats() -> dict:
    """What this thread's pool holds: ``{"arrays": count, "bytes": total, "scratch": n, "work": n}``."""
    kinds = {"scratch": 0, "work": 0}
    for key, arrays in _pool.entries.items():
        kinds[key[0]] += len(arrays)
    return {"arrays": _pool.count, "bytes": _pool.nbytes, **kinds}
