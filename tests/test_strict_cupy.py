"""The CuPy stand-in (tests/_strict_cupy.py) refuses what CuPy refuses and counts what it should.

Where CuPy is installed (it imports without a GPU), the keyword tables are
compared with CuPy's own signatures, so the stand-in cannot drift into
accepting arguments CuPy rejects.
"""
import inspect
import re

import numpy as np
import pytest

from _strict_cupy import (FUNCTION_KWARGS, IMPLICIT_CONVERSION, METHOD_KWARGS, NAMESPACE_KWARGS, UFUNC_KWARGS,
                          UFUNCS, cupy as cp)


@pytest.fixture(autouse=True)
def fresh_counters():
    cp.counters.reset()


def device(values, dtype=np.float32):
    return cp.asarray(np.asarray(values, dtype=dtype))


def test_implicit_conversion_to_numpy_is_refused_like_cupy():
    a = device([1.0, 2.0])
    for convert in (np.asarray, np.array, lambda v: np.stack([np.zeros(2), v]), lambda v: np.float32(1) + np.zeros(2) + v):
        with pytest.raises(TypeError, match="Implicit conversion|Unsupported type"):
            convert(a)
    with pytest.raises(TypeError, match=re.escape(IMPLICIT_CONVERSION[:40])):
        np.asarray([a, a])
    np.testing.assert_array_equal(a.get(), [1.0, 2.0])
    np.testing.assert_array_equal(cp.asnumpy(a), [1.0, 2.0])


def test_host_arrays_are_refused_by_ufuncs_functions_and_operators():
    a, host = device([1.0, 2.0]), np.array([1.0, 2.0], dtype=np.float32)
    for op in (lambda: a + host, lambda: host * a, lambda: cp.add(a, host), lambda: cp.exp(host),
               lambda: cp.concatenate([a, host]), lambda: cp.matmul(a, host), lambda: cp.maximum(a, [1.0, 2.0]),
               lambda: cp.ascontiguousarray(host), lambda: cp.add.at(host, [0], 1.0)):
        with pytest.raises(TypeError, match="Unsupported type"):
            op()
    # scalars of both kinds are fine, as on CuPy, and 0-d results stay device arrays
    assert isinstance(a * np.float32(2) + 1.0, cp.ndarray) and isinstance(a.sum(), cp.ndarray)
    assert isinstance(np.exp(a), cp.ndarray) and np.shape(a) == (2,)   # NumPy dispatches to the device module


def test_only_cupys_keyword_arguments_are_accepted():
    a = device([[1.0, -2.0]])
    with pytest.raises(TypeError, match="'where'"):
        cp.exp(a, where=a > 0)
    with pytest.raises(TypeError, match="'initial'"):
        cp.max(a, initial=0.0)
    with pytest.raises(TypeError, match="'initial'"):
        a.sum(initial=0.0)
    with pytest.raises(TypeError, match="'like'"):
        cp.zeros(3, like=a)
    out = cp.empty_like(a)
    assert cp.multiply(a, 2.0, out=out) is out and float(out.sum()) == -2.0
    assert a.astype(np.float64, copy=False).dtype == np.float64


def test_basic_index_assignment_from_host_is_refused():
    a = cp.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        a[0:2] = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        a[...] = np.ones((3, 2), dtype=np.float32)
    a[0] = np.float32(5)        # scalars fill
    a[1:] = device([[1.0, 2.0]])
    a[cp.asarray(np.array([0]))] = 7.0
    np.testing.assert_array_equal(a.get(), [[7, 7], [1, 2], [1, 2]])


def test_zero_d_results_stay_device_arrays_like_cupy():
    vector = device([1.0, -2.0])
    scalar = vector.sum()
    for result in (-scalar, abs(scalar), +scalar, scalar.T, vector[1], next(iter(vector)), scalar * 2, 2 - scalar,
                   cp.exp(scalar), scalar.astype(np.float64), vector.max()):
        assert isinstance(result, cp.ndarray) and result.ndim == 0
        assert isinstance(-result * 2 + result, cp.ndarray)       # and keep working as arrays
    assert cp.counters.syncs == 0


def test_no_index_protocol_like_cupy():
    with pytest.raises(TypeError):
        range(device(3, dtype=np.int64))


def test_host_syncs_and_copies_are_counted():
    a = device([1.5, 2.5])                             # one host -> device copy
    assert cp.counters.host_to_device == 1 and cp.counters.syncs == 0
    b = (a * 2).sum()
    assert cp.counters.syncs == 0                      # device work alone never syncs
    float(b), int(b), bool(b), b.item(), a.tolist(), a.get(), f"{b:.2f}"
    assert cp.counters.syncs == 7
    a[a > 2.0]                                         # boolean mask: CuPy reads the count back
    assert cp.counters.syncs == 8
    a[np.array([0, 1])]                                # host index array: copied to the device
    assert cp.counters.host_to_device == 2


def _cupy_keywords(func, drop_self=False):
    """Keyword names CuPy accepts, from inspect.signature or the first docstring line (Cython and ufuncs)."""
    try:
        params = inspect.signature(func).parameters.values()
        return {p.name for p in params if p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    except (TypeError, ValueError):
        pass
    line = (func.__doc__ or "").strip().splitlines()[0]
    inside = line[line.index("(") + 1:line.rindex(")")]
    names = set()
    for part in (p.strip() for p in inside.split(",")):
        if part == "/":
            names.clear()          # everything before / is positional only
            continue
        if not part or part.startswith("*") and part != "*":
            continue
        name = part.split("=")[0].split()[-1].replace("\\", "")
        if name not in ("*", "self"):
            names.add(name)
    return names


def test_keyword_tables_match_the_installed_cupy():
    cupy = pytest.importorskip("cupy")
    for name in UFUNCS:
        assert _cupy_keywords(getattr(cupy, name)) == UFUNC_KWARGS, name
    for name, allowed in FUNCTION_KWARGS.items():
        real = _cupy_keywords(getattr(cupy, name))
        if name == "einsum":        # CuPy's einsum(*operands, **kwargs) pops the names it understands
            real = set(re.findall(r"kwargs\.pop\('(\w+)'", inspect.getsource(cupy.einsum)))
        if name == "pad":           # pad(array, pad_width, mode='constant', **kwargs) reads constant_values
            real |= {"constant_values"}
        assert set(allowed) <= real, (name, set(allowed) - real)
    for path, allowed in NAMESPACE_KWARGS.items():
        func = cupy
        for part in path.split("."):
            func = getattr(func, part)
        assert set(allowed) <= _cupy_keywords(func), path
    for name, allowed in METHOD_KWARGS.items():
        assert set(allowed) <= _cupy_keywords(getattr(cupy.ndarray, name)), name
    assert not hasattr(cupy.ndarray, "__index__")
