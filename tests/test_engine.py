"""The elementwise engines (minigru.engine): the switch, and the numba kernels against the NumPy reference path.

Every numba kernel is compared with the NumPy code it replaces, in float32 and float64, over
shapes down to batch 1 and one time step, by the largest difference relative to the array's
largest entry. float64 must agree to round-off (1e-12); float32 within what the kernels'
float32 tanh allows (a rational approximation, at most 8 ulp from the true tanh, checked here
against float64) after a few steps: 1e-5. The SGD kernel does the reference's operations in
the reference's order, so it must agree to the bit. The GRU with the engine on also passes the
finite-difference gradient check of tests/test_gru.py.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigru import engine, nn
from minigru import functional as F
from minigru.gradcheck import numerical_gradient, rel_error
from minigru.optim import SGD

# the kernels need numba (part of the test extra); the switch's error without it is tested either way
needs_numba = pytest.mark.skipif(not engine.numba_available(), reason="needs numba: pip install 'minigru[fast]'")

TOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


@pytest.fixture
def numba_engine():
    with engine.use_engine("numba"):
        yield


def both_engines(run):
    """run() under the NumPy engine and under the numba engine: (reference results, numba results)."""
    with engine.use_engine("numpy"):
        reference = [None if r is None else np.array(r) for r in run()]
    with engine.use_engine("numba"):
        fused = [None if r is None else np.array(r) for r in run()]
    return reference, fused


def scaled_error(a, b):
    """max |a − b| relative to the largest |a|: kernels that round differently (float32 tanh, float64
    sums) differ by round-off of the array's scale, which an elementwise relative error would blow
    up wherever an entry is itself the small difference of large terms."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return 0.0 if a.size == 0 else float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def assert_close(reference, fused, dtype):
    assert len(reference) == len(fused)
    for i, (a, b) in enumerate(zip(reference, fused)):
        if a is None:
            assert b is None, i
            continue
        assert b.dtype == a.dtype == dtype, i
        assert scaled_error(a, b) <= TOL[dtype], i


# ------------------------------------------------------------------ the switch
@needs_numba
def test_default_engine_is_numpy_and_the_env_variable_chooses(monkeypatch):
    monkeypatch.setattr(engine, "_current", None)
    monkeypatch.delenv(engine.ENGINE_VARIABLE, raising=False)
    assert engine.get_engine() == engine.DEFAULT_ENGINE == "numpy"
    monkeypatch.setattr(engine, "_current", None)
    monkeypatch.setenv(engine.ENGINE_VARIABLE, "numba")
    assert engine.get_engine() == "numba"
    monkeypatch.setattr(engine, "_current", None)
    monkeypatch.setenv(engine.ENGINE_VARIABLE, "fortran")
    with pytest.raises(ValueError, match="MINIGRU_ENGINE='fortran'"):
        engine.get_engine()


@needs_numba
def test_use_engine_restores_and_unknown_names_fail():
    before = engine.get_engine()
    with engine.use_engine("numba", threads=1):
        assert engine.get_engine() == "numba" and engine.engine_threads() == 1
    assert engine.get_engine() == before
    with pytest.raises(ValueError, match="unknown elementwise engine"):
        engine.set_engine("numexpr")
    with pytest.raises(ValueError, match="between 1 and"):
        engine.set_engine("numba", threads=-1)


def test_missing_numba_is_one_clear_error_naming_the_extra():
    # a fresh interpreter in which `import numba` fails
    code = ("import sys; sys.modules['numba'] = None\n"
            "from minigru import engine\n"
            "assert not engine.numba_available()\n"
            "try:\n    engine.set_engine('numba')\n"
            "except engine.EngineUnavailableError as err:\n    print(err)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message = done.stdout.strip()
    assert "\n" not in message and "pip install 'minigru[fast]'" in message


@needs_numba
def test_kernels_apply_to_contiguous_host_float_arrays_only(numba_engine, cupy_xp):
    a = np.zeros((3, 4), np.float32)
    assert engine.kernels_for(a, None, a) is not None
    assert engine.kernels_for(a, a.astype(np.float64)) is None     # mixed dtypes
    assert engine.kernels_for(a.T) is None                          # a strided view
    assert engine.kernels_for(a.astype(np.float16)) is None
    assert engine.kernels_for(cupy_xp.zeros((3, 4), np.float32)) is None
    with engine.use_engine("numpy"):
        assert engine.kernels_for(a) is None


# ------------------------------------------------------------------ tanh
@needs_numba
def test_float32_tanh_within_8_ulp_and_propagates_nan():
    from minigru._numba import tanh_array
    x = np.concatenate([np.linspace(-10, 10, 200_001, dtype=np.float32),
                        np.float32([0, -0.0, 1e-30, -1e-30, 1e-8, 7.9, 7.91, 40, -40, np.inf, -np.inf, np.nan])])
    out = np.empty_like(x)
    tanh_array(x, out)
    exact = np.tanh(x.astype(np.float64))
    finite = ~np.isnan(x)
    ulp = np.spacing(np.abs(exact[finite]).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out[finite] - exact[finite]) / ulp) <= 8
    assert np.isnan(out[-1]) and out[-3] == 1 and out[-2] == -1
    x64 = x.astype(np.float64)
    out64 = np.empty_like(x64)
    tanh_array(x64, out64)    # the C library's tanh: NumPy's own SIMD tanh may differ in the last bit
    ref64 = np.tanh(x64)
    assert np.all(np.abs(out64 - ref64)[finite] <= 2 * np.spacing(np.abs(ref64[finite])))


# ------------------------------------------------------------------ GRU
def _gru_args(rng, dtype, steps, batch, features, hidden, bias):
    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    return [r(steps, batch, features), r(batch, hidden), r(3 * hidden, features, scale=0.5),
            r(3 * hidden, hidden, scale=0.5), r(3 * hidden, scale=0.5) if bias else None,
            r(3 * hidden, scale=0.5) if bias else None]


@needs_numba
@settings(max_examples=25, deadline=None)
@given(steps=st.integers(1, 4), batch=st.integers(1, 5), features=st.integers(1, 4), hidden=st.integers(1, 6),
       bias=st.booleans(), h0=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_gru_numba_matches_numpy(steps, batch, features, hidden, bias, h0, dtype, seed):
    rng = np.random.default_rng(seed)
    args = _gru_args(rng, dtype, steps, batch, features, hidden, bias)
    if not h0:
        args[1] = None
    dhs = rng.standard_normal((steps, batch, hidden)).astype(dtype)
    dh_last = rng.standard_normal((batch, hidden)).astype(dtype)

    def run():
        hs, cache = F.gru_forward(*args, reset_after=True)
        hs = hs.copy()
        return [hs, *F.gru_backward(dhs, dh_last, cache)]
    reference, fused = both_engines(run)
    assert_close(reference, fused, dtype)


@needs_numba
def test_gru_empty_batch_is_the_same_error(numba_engine):
    args = _gru_args(np.random.default_rng(0), np.float32, 2, 1, 3, 4, True)
    args[0] = args[0][:, :0]
    with pytest.raises(ValueError, match="empty batch"):
        F.gru_forward(*args)


@needs_numba
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 4, 3), (2, 4, 5, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_numba_gradcheck(numba_engine, shape, bias):
    """The finite-difference check of tests/test_gru.py, with the engine on (float64)."""
    rng = np.random.default_rng(sum(shape))
    args = _gru_args(rng, np.float64, *shape, bias=bias)
    dhs = rng.standard_normal((shape[0], shape[1], shape[3]))
    dh_last = rng.standard_normal((shape[1], shape[3]))

    def outputs(_):
        hs, _cache = F.gru_forward(*args)
        return hs.copy(), hs[-1].copy()

    _, cache = F.gru_forward(*args)
    grads = F.gru_backward(dhs, dh_last, cache)
    for name, array, grad in zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], args, grads):
        if array is not None:
            assert rel_error(grad, numerical_gradient(outputs, array, [dhs, dh_last], eps=1e-5)) <= 1e-6, name


@needs_numba
def test_gru_reset_before_keeps_the_numpy_loop(numba_engine):
    """reset_after=False has no kernel: the engine must leave it exactly as it was."""
    args = _gru_args(np.random.default_rng(3), np.float32, 3, 2, 4, 3, True)
    with engine.use_engine("numpy"):
        reference, _ = F.gru_forward(*args, reset_after=False)
        reference = reference.copy()
    fused, _ = F.gru_forward(*args, reset_after=False)
    np.testing.assert_array_equal(fused, reference)


# ------------------------------------------------------------------ LSTM
def _lstm_args(rng, dtype, steps, batch, features, hidden, bias):
    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    return [r(steps, batch, features), r(batch, hidden), r(batch, hidden), r(4 * hidden, features, scale=0.5),
            r(4 * hidden, hidden, scale=0.5), r(4 * hidden, scale=0.5) if bias else None,
            r(4 * hidden, scale=0.5) if bias else None]


@needs_numba
@settings(max_examples=15, deadline=None)
@given(steps=st.integers(1, 4), batch=st.integers(1, 5), features=st.integers(1, 4), hidden=st.integers(1, 6),
       bias=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_lstm_numba_matches_numpy(steps, batch, features, hidden, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    args = _lstm_args(rng, dtype, steps, batch, features, hidden, bias)
    dhs = rng.standard_normal((steps, batch, hidden)).astype(dtype)
    dh_last, dc_last = (rng.standard_normal((batch, hidden)).astype(dtype) for _ in range(2))

    def run():
        (hs, c_n), cache = F.lstm_forward(*args)
        hs = hs.copy()
        return [hs, c_n, *F.lstm_backward(dhs, dh_last, dc_last, cache)]
    reference, fused = both_engines(run)
    assert_close(reference, fused, dtype)


@needs_numba
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 4, 3)])
def test_lstm_numba_gradcheck(numba_engine, shape):
    """The finite-difference check of the LSTM kernel, with the engine on (float64)."""
    rng = np.random.default_rng(sum(shape))
    args = _lstm_args(rng, np.float64, *shape, bias=True)
    dhs = rng.standard_normal((shape[0], shape[1], shape[3]))
    dh_last, dc_last = rng.standard_normal((2, shape[1], shape[3]))

    def outputs(_):
        (hs, c_n), _cache = F.lstm_forward(*args)
        return hs.copy(), hs[-1].copy(), c_n

    _, cache = F.lstm_forward(*args)
    grads = F.lstm_backward(dhs, dh_last, dc_last, cache)
    for name, array, grad in zip(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], args, grads):
        numeric = numerical_gradient(outputs, array, [dhs, dh_last, dc_last], eps=1e-5)
        assert rel_error(grad, numeric) <= 1e-6, name


# ------------------------------------------------------------------ batch norm
BN_SHAPES = [(1, 3), (2, 3), (5, 4), (1, 2, 5), (4, 3, 2, 3), (2, 8, 4, 4)]


@needs_numba
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_numba_matches_numpy(shape, dtype, training, affine):
    if training and shape[0] * int(np.prod(shape[2:])) == 1:
        with engine.use_engine("numba"), pytest.raises(ValueError, match="more than 1 value"):
            F.batchnorm_forward(np.ones(shape, dtype), None, None, training=True)
        return
    rng = np.random.default_rng(len(shape) + shape[0])
    channels = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, channels).astype(dtype) if affine else None
    beta = rng.standard_normal(channels).astype(dtype) if affine else None
    start_mean, start_var = rng.standard_normal(channels).astype(dtype), rng.uniform(0.5, 2, channels).astype(dtype)

    def run():
        mean, var = start_mean.copy(), start_var.copy()
        out, cache = F.batchnorm_forward(x, gamma, beta, mean, var, training=training)
        return [out, mean, var, *F.batchnorm_backward(dout, cache)]
    reference, fused = both_engines(run)
    assert_close(reference, fused, dtype)


# ------------------------------------------------------------------ SGD
@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
                                     dict(momentum=0.8, dampening=0.3, weight_decay=1e-2), dict(weight_decay=0.1)])
def test_sgd_numba_is_the_reference_to_the_bit(dtype, options):
    rng = np.random.default_rng(7)
    shapes = [(3, 4, 2, 2), (5,), (1,), (0, 3)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]

    def run():
        params = [nn.Parameter(w.copy()) for w in start]
        opt = SGD(params, lr=0.1, **options)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad[...] = g
            opt.step()
        buffers = [opt.state[p].get("momentum_buffer") for p in params]
        return [p.data for p in params] + [b for b in buffers if b is not None]
    reference, fused = both_engines(run)
    assert len(reference) == len(fused)
    for a, b in zip(reference, fused):
        np.testing.assert_array_equal(b, a)


# ------------------------------------------------------------------ the CLI
TINY_GRU_BN = ["--model", "cnn-gru-bn", "--dataset", "synthetic-shapes", "--limit-train", "32", "--limit-test", "8",
               "--batch-size", "16", "--model-arg", "image_size=8", "--model-arg", "widths=[4,8]",
               "--model-arg", "convs_per_block=[1,2]", "--model-arg", "hidden_size=6", "--no-progress",
               "--val-split", "0", "--epochs", "1", "--augment", "none", "--tta", "none"]


@needs_numba
def test_cli_engine_option_trains_like_numpy_and_says_so(tmp_path, capsys):
    from minigru import cli
    before = engine.get_engine()
    losses = {}
    for name in ("numpy", "numba"):
        assert cli.main(["train", *TINY_GRU_BN, "--engine", name, "--out", str(tmp_path / name)]) == 0
        header = capsys.readouterr().out.splitlines()[0]
        assert ("elementwise engine numba (1 thread)" in header) == (name == "numba"), header
        assert engine.get_engine() == before                  # the choice ends with the command
        losses[name] = json.loads((tmp_path / name / "history.json").read_text())
    first, second = (losses[n]["train_loss"][-1] for n in ("numpy", "numba"))
    assert abs(first - second) <= 1e-4 * abs(first)   # GRU, batch norm and SGD all ran on the kernels


def test_cli_engine_without_numba_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from minigru import cli

    def missing():
        raise engine.EngineUnavailableError("the 'numba' elementwise engine needs numba, which could not be "
                                            "imported (No module named 'numba'); pip install 'minigru[fast]'")
    monkeypatch.setattr(engine, "_load_numba", missing)
    assert cli.main(["train", *TINY_GRU_BN, "--engine", "numba", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "minigru[fast]" in err
