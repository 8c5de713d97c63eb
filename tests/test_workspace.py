"""The kernels' shared pool of work arrays (minigru.functional._workspace): reuse without aliasing.

Correctness only: what is lent, what comes back, the budget, threads, and that arrays a kernel
returns never change when later calls reuse the pool. (Speed is measured by benchmarks/.)
"""
import threading

import numpy as np
import pytest

import minigru.functional as F
from minigru import backend
from minigru.functional import _workspace as ws


@pytest.fixture(autouse=True)
def empty_pool():
    ws.clear()
    yield
    ws.clear()


# ----------------------------------------------------------------------- scratch buffers
def test_scratch_is_reused_by_name_shape_and_dtype():
    like32, like64 = np.zeros(1, np.float32), np.zeros(1)
    a = ws.scratch("a", (3, 4), like32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and not a.any()
    a[...] = 7
    assert ws.scratch("a", (3, 4), like32) is a                 # same name, shape, dtype: the same buffer
    assert ws.scratch("b", (3, 4), like32) is not a             # another name
    assert ws.scratch("a", (4, 3), like32) is not a             # another shape
    assert ws.scratch("a", (3, 4), like64) is not a             # another dtype
    assert ws.scratch("a", (3, 4), like64).dtype == np.float64


def test_new_scratch_buffer_holds_its_fill_value():
    buf = ws.scratch("padded", (2, 5), np.zeros(1, np.float32), fill=-np.inf)
    assert np.all(buf == -np.inf)
    assert ws.scratch("padded", (2, 5), np.zeros(1, np.float32), fill=0.0) is not buf


# ----------------------------------------------------------------- borrowed work arrays
def test_take_gives_back_a_returned_array_and_never_lends_one_twice():
    a = ws.take(np, (4, 5), np.float32)
    b = ws.take(np, (4, 5), np.float32)
    assert a is not b and not np.shares_memory(a, b)          # both borrowed: distinct memory
    ws.give_back(a)
    c = ws.take(np, (4, 5), np.float32)
    assert c is a                                              # recycled
    d = ws.take(np, (4, 5), np.float32)
    assert d is not a and not np.shares_memory(d, a)           # a is borrowed again: not lent twice


def test_give_back_of_a_view_returns_the_owner_and_ignores_foreign_memory():
    owner = ws.take(np, (6, 4), np.float64)
    ws.give_back(owner[2:].T)
    assert ws.stats()["work"] == 1
    assert ws.take(np, (6, 4), np.float64) is owner
    foreign = np.frombuffer(bytearray(64), dtype=np.float64)   # memory owned by a bytearray
    ws.give_back(foreign, None)
    assert ws.stats()["work"] == 0


def test_giving_back_twice_does_not_lend_the_array_twice():
    a = ws.take(np, (3,), np.float32)
    ws.give_back(a)
    ws.give_back(a)
    first, second = ws.take(np, (3,), np.float32), ws.take(np, (3,), np.float32)
    assert first is a and second is not a


def test_budget_drops_least_recently_used(monkeypatch):
    monkeypatch.setattr(ws, "MAX_BYTES", 3 * 800)
    arrays = [np.empty(100) for _ in range(5)]                 # 800 bytes each
    ws.give_back(*arrays)
    s = ws.stats()
    assert s["bytes"] <= 3 * 800 and s["arrays"] == 3
    kept = [ws.take(np, (100,), np.float64) for _ in range(3)]
    assert {id(a) for a in kept} == {id(a) for a in arrays[2:]}  # the oldest two were dropped
    monkeypatch.setattr(ws, "MAX_ARRAYS", 2)
    ws.give_back(*kept)
    assert ws.stats()["arrays"] == 2


def test_clear_and_stats():
    ws.give_back(np.empty((2, 2)))
    ws.scratch("s", (8,), np.zeros(1))
    s = ws.stats()
    assert (s["arrays"], s["work"], s["scratch"]) == (2, 1, 1)
    assert s["bytes"] == 32 + 64
    ws.clear()
    assert ws.stats() == {"arrays": 0, "bytes": 0, "scratch": 0, "work": 0}


def test_pools_are_per_thread():
    mine = ws.take(np, (5,), np.float32)
    ws.give_back(mine)
    seen = {}

    def other():
        seen["array"] = ws.take(np, (5,), np.float32)
        seen["scratch"] = ws.scratch("t", (2,), np.zeros(1))

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert seen["array"] is not mine                           # the other thread has its own pool
    assert ws.scratch("t", (2,), np.zeros(1)) is not seen["scratch"]
    assert ws.take(np, (5,), np.float32) is mine


def test_take_allocates_fresh_on_cupy(xp, backend_name):
    if backend_name == "numpy":
        pytest.skip("CuPy only")
    a = ws.take(xp, (4,), np.float32)
    ws.give_back(a)                                            # ignored: CuPy has its own pool
    assert ws.stats()["work"] == 0


# ------------------------------------------------- kernels: returned arrays never alias the pool
def _gru_args(xp, rng, T=3, N=2, I=4, H=5):
    def draw(*shape):
        return xp.asarray(rng.standard_normal(shape))
    return draw(T, N, I), draw(3 * H, I), draw(3 * H, H), draw(3 * H), draw(3 * H), draw(T, N, H)


def test_gru_outputs_survive_later_calls_that_reuse_the_pool(xp, rng):
    x, w_ih, w_hh, b_ih, b_hh, dout = _gru_args(xp, rng)
    hs, cache = F.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    hs_before = backend.to_numpy(hs).copy()
    grads = F.gru_backward(dout, None, cache)
    grads_before = [backend.to_numpy(g).copy() for g in grads]
    for _ in range(2):   # same shapes: these calls take exactly the arrays the first one gave back
        hs2, cache2 = F.gru_forward(x * 3 + 1, None, w_ih, w_hh, b_ih, b_hh)
        F.gru_backward(dout * -2, None, cache2)
    np.testing.assert_array_equal(backend.to_numpy(hs), hs_before)
    for g, before in zip(grads, grads_before):
        np.testing.assert_array_equal(backend.to_numpy(g), before)


def test_a_consumed_gru_cache_refuses_a_second_backward(xp, rng):
    x, w_ih, w_hh, b_ih, b_hh, dout = _gru_args(xp, rng)
    _, cache = F.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    F.gru_backward(dout, None, cache)
    with pytest.raises(RuntimeError, match="already used"):
        F.gru_backward(dout, None, cache)


@pytest.mark.parametrize("padding", [1, 0, "same"])
def test_conv_and_pool_outputs_survive_later_calls(xp, rng, padding):
    x = xp.asarray(rng.standard_normal((2, 3, 6, 6)))
    w, b = xp.asarray(rng.standard_normal((4, 3, 3, 3))), xp.asarray(rng.standard_normal(4))
    out, cache = F.conv2d_forward(x, w, b, 1, padding)
    dout = xp.asarray(rng.standard_normal(out.shape))
    grads = F.conv2d_backward(dout, cache)
    pooled, pcache = F.maxpool2d_forward(out, 2)
    dpool = F.maxpool2d_backward(xp.ones_like(pooled), pcache)
    kept = [backend.to_numpy(a).copy() for a in (out, *grads, pooled, dpool)]
    for _ in range(2):   # reuse every scratch buffer with other numbers
        o2, c2 = F.conv2d_forward(-x, w * 2, b, 1, padding)
        F.conv2d_backward(dout * 5, c2)
        p2, pc2 = F.maxpool2d_forward(o2, 2)
        F.maxpool2d_backward(xp.ones_like(p2) * 3, pc2)
    for a, before in zip((out, *grads, pooled, dpool), kept):
        np.testing.assert_array_equal(backend.to_numpy(a), before)


def test_col2im_does_not_change_its_input(xp, rng):
    x_shape = (2, 3, 5, 4)
    cols = xp.asarray(rng.standard_normal((3 * 9, 2 * 5 * 4)))
    before = backend.to_numpy(cols).copy()
    F.col2im(cols, x_shape, 3, 3, 1, 1, merge_batch=True)
    np.testing.assert_array_equal(backend.to_numpy(cols), before)
