"""Process-level tuning for speed on the CPU: opt-in helpers (``import minigru`` does not import this).

Nothing here changes a result; it changes how fast the same arithmetic runs.
See docs/performance.md for the measurements behind each helper.

* :func:`tune_host_memory` — tell glibc's ``malloc`` to keep freed memory for
  reuse instead of handing it back to the operating system. A training step
  frees and re-allocates the same large arrays every step; fresh memory from
  the OS costs one page fault per 4 KiB on first touch (about 0.85 us each on
  the benchmark VM), which for a 19 MB im2col matrix is ~4 ms of pure
  overhead per call. A no-op (returning ``{}``) on other C libraries.
* :func:`blas_info` — which BLAS library NumPy uses, its kernel (e.g.
  ``SkylakeX``) and its thread count, from ``threadpoolctl`` if installed.
* :func:`blas_summary` — the same as one line for a run header, saying when
  ``OPENBLAS_CORETYPE`` picked OpenBLAS's kernel instead of OpenBLAS itself.
* :func:`blas_has_avx512_kernels` — whether NumPy's BLAS multiplies with
  512-bit (AVX-512) kernels, which moves the point where Winograd convolution
  beats im2col (``minigru.functional.winograd.conv_algorithm``).
* :func:`blas_threads` — a context manager that limits the BLAS threads
  (``threadpoolctl`` needed), e.g. to compare with a 1-thread run.

Typical use, once at the start of a training script::

    import minigru.perf
    minigru.perf.tune_host_memory()
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform

__all__ = ["tune_host_memory", "host_memory_tuned", "blas_info", "blas_summary", "blas_has_avx512_kernels",
           "blas_threads", "cpu_count"]

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

DEFAULT_MMAP_THRESHOLD = 1 << 30
"""Arrays below this size (1 GiB) come from malloc's heap, which is reused, not from fresh mmaps."""

_tuned: dict = {}


def _glibc():
    """The C library as a ctypes handle if it is glibc (the only one with these mallopt knobs), else None."""
    if platform.system() != "Linux":
        return None
    libc_name, _version = platform.libc_ver()
    if libc_name != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_host_memory(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD) -> dict:
    """Make glibc's malloc recycle large blocks instead of returning them to the OS; returns what was set.

    Three settings (``mallopt``), all process-wide and harmless to results:

    * ``M_MMAP_THRESHOLD = mmap_threshold``: blocks smaller than this come from
      the heap rather than from a private ``mmap`` each (an mmap'ed block goes
      back to the OS on ``free``, so its successor starts with fresh pages and
      pays a page fault per 4 KiB again);
    * ``M_TRIM_THRESHOLD`` = the maximum: freed memory at the top of the heap
      is kept for the next allocation instead of being trimmed;
    * ``M_ARENA_MAX = 1``: every thread allocates from the one main heap. By
      default a second thread (a :class:`~minigru.nn.DataParallel` replica)
      gets an arena of its own, whose heaps hold at most 64 MiB each, so its
      larger arrays bypass the first setting and come from fresh mmaps again
      (measured: the replica's thread took 2.0 s for a step of 128 images that
      takes the main thread 1.2 s). Threads allocate seldom (large arrays,
      reused through the kernels' pools), so sharing one heap's lock costs
      nothing measurable.

    The process's peak memory does not grow (it is set by the largest set of
    arrays alive at once), but its resident size no longer shrinks between
    steps. Call it once, early (before big arrays exist and before other threads start). On a C library other
    than glibc it does nothing and returns ``{}``; calling it twice is harmless.
    """
    if mmap_threshold <= 0:
        raise ValueError(f"mmap_threshold must be a positive number of bytes, got {mmap_threshold}")
    libc = _glibc()
    if libc is None:
        return {}
    settings = {"M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, int(mmap_threshold)),
                "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 2**31 - 1),
                "M_ARENA_MAX": (_M_ARENA_MAX, 1)}
    applied = {}
    for name, (param, value) in settings.items():
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(min(value, 2**31 - 1))) == 1:
            applied[name] = value
    _tuned.update(applied)
    return dict(applied)


def host_memory_tuned() -> dict:
    """The settings :func:`tune_host_memory` applied in this process so far (``{}`` if none)."""
    return dict(_tuned)


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS tells, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_info() -> list:
    """The BLAS libraries loaded in this process, as threadpoolctl reports them.

    A list of dicts with ``internal_api`` (openblas, mkl, ...), ``version``,
    ``architecture`` (the kernel, e.g. ``SkylakeX``; OpenBLAS only),
    ``num_threads`` and ``threading_layer``. Empty if threadpoolctl is not
    installed. NumPy is imported first, so its BLAS is always among them.
    """
    try:
        import threadpoolctl  # noqa: PLC0415  (optional)
    except ImportError:
        return []
    import numpy  # noqa: F401,PLC0415  (loads NumPy's BLAS so that threadpoolctl can see it)
    keys = ("internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{k: info.get(k) for k in keys} for info in threadpoolctl.threadpool_info()
            if info.get("user_api") == "blas"]


def blas_summary(info=None) -> str:
    """NumPy's BLAS in a few words for a run header, e.g. ``"openblas 0.3.31 with its SkylakeX kernels"``; empty
    without threadpoolctl. ``info``: :func:`blas_info`'s list (default: this process's).

    OpenBLAS picks its kernels for the CPU when it loads, unless ``OPENBLAS_CORETYPE`` names them: some
    machines set it to ``Haswell`` (AVX2) on CPUs with AVX-512, for older OpenBLAS builds' sake, and
    then one thread multiplies float32 matrices at half the speed (docs/performance.md, "2026-12-07, a
    later AMD EPYC 2-core VM"). Training times depend on it, so the header says when it was set.
    """
    libraries = blas_info() if info is None else info
    if not libraries:
        return ""
    lib = libraries[0]
    text = " ".join(str(lib[k]) for k in ("internal_api", "version") if lib.get(k))
    if lib.get("architecture"):
        text += f" with its {lib['architecture']} kernels"
        forced = os.environ.get("OPENBLAS_CORETYPE")
        if forced and lib.get("internal_api") == "openblas":
            text += f" (set by OPENBLAS_CORETYPE={forced})"
    return text


AVX512_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
"""OpenBLAS's kernel families (threadpoolctl's ``architecture``, lower-cased) that multiply with 512-bit vectors.
OpenBLAS picks one of them on CPUs with AVX-512 (the benchmark VM's AMD EPYC, CPU family 26, gets
SkylakeX) unless ``OPENBLAS_CORETYPE`` names another."""


def blas_has_avx512_kernels(info=None) -> bool:
    """Whether NumPy's BLAS (the first of :func:`blas_info`'s list, or of ``info``) is OpenBLAS running AVX-512
    kernels (:data:`AVX512_KERNELS`). False when it cannot tell: without threadpoolctl, or for a BLAS that does
    not name its kernels (MKL, Accelerate).

    Why it matters: on the 2-core AMD EPYC VM one thread multiplies float32 matrices 1.5-1.9x faster with
    OpenBLAS's SkylakeX kernels than with its Haswell (AVX2) ones, while memory-bound passes (im2col's copies,
    Winograd's transforms) run at the same speed, so Winograd convolution needs more channels to gain
    (docs/performance.md, item 9). The answer for this process is computed once: the kernels are chosen when
    OpenBLAS loads.
    """
    if info is None:
        return _this_process_has_avx512_kernels()
    lib = info[0] if info else {}
    return lib.get("internal_api") == "openblas" and str(lib.get("architecture") or "").lower() in AVX512_KERNELS


@functools.lru_cache(maxsize=1)
def _this_process_has_avx512_kernels() -> bool:
    return blas_has_avx512_kernels(blas_info())


@contextlib.contextmanager
def blas_threads(n: int):
    """Context manager: NumPy's BLAS uses at most ``n`` threads inside the block (needs threadpoolctl)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"blas_threads needs a positive integer, got {n!r}")
    try:
        import threadpoolctl  # noqa: PLC0415  (optional)
    except ImportError as err:
        raise RuntimeError("blas_threads needs threadpoolctl: pip install threadpoolctl") from err
    import numpy  # noqa: F401,PLC0415
    with threadpoolctl.threadpool_limits(limits=n, user_api="blas"):
        yield
