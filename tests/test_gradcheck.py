"""The gradient check never cries wolf, and still catches real bugs (issue 13, §2).

* Correct layers: every case of ``python -m minigru gradcheck`` over 100 seeds (new weights,
  inputs and upstream gradients each time) passes, including the layers whose gradients have
  near-zero entries that the old elementwise relative error failed.
* Planted bugs: a set of wrong backward passes, each planted by wrapping a kernel or a layer's
  backward for one test (the library is not edited), is caught by the same comparison.
"""
import inspect
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import minigru.functional as F
from minigru import nn
from minigru.cli.gradcheck import gradcheck_cases
from minigru.gradcheck import (check_gradient, check_module, compare_gradients, finite_difference_noise,
                               numerical_gradient)

SEEDS = range(100)
CASES = dict(gradcheck_cases())


# ------------------------------------------------------------------ the comparison itself
def test_tiny_entries_are_judged_against_the_noise_not_relatively():
    analytic = np.array([1.0, 3e-12, -0.5])
    numeric = np.array([1.0 + 1e-11, -2e-12, -0.5])          # finite-difference noise of ~1e-11
    assert compare_gradients(analytic, numeric, noise=1e-9).passed
    assert not compare_gradients(analytic, numeric + [0, 0, 1e-3], noise=1e-9).passed  # a real error
    assert not compare_gradients(analytic, numeric + [0, 5e-9, 0], noise=1e-9).passed  # above the noise


def test_nan_and_shape_mismatch_never_pass():
    assert compare_gradients(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), noise=1e-9).error == np.inf
    with pytest.raises(ValueError, match="shapes differ"):
        compare_gradients(np.zeros(3), np.zeros(4), noise=1e-9)


def test_zero_tolerance_allows_no_noise():
    result = compare_gradients(np.array([1e-12]), np.array([2e-12]), noise=1e-9, tol=0.0)
    assert not result.passed


def test_noise_bound_grows_with_the_checked_sum():
    out, dout = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    small = finite_difference_noise(out, dout)
    assert finite_difference_noise(10 * out, dout) == pytest.approx(10 * small)
    assert finite_difference_noise(out, dout, eps=1e-3) > small      # truncation grows as eps²


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    dout = np.array([1.0, 2.0, -1.0])
    numeric = numerical_gradient(lambda v: np.sin(v), x, dout)
    np.testing.assert_allclose(numeric, dout * np.cos(x), rtol=1e-9)
    np.testing.assert_array_equal(x, [0.3, -1.2, 2.0])                # restored exactly
    result = check_gradient(dout * np.cos(x), lambda v: np.sin(v), x, dout)
    assert result.passed and result.worst in {(0,), (1,), (2,)}


def test_a_kink_within_eps_is_left_out_but_a_wrong_value_there_still_fails():
    relu = lambda v: np.maximum(v, 0)   # noqa: E731
    x = np.array([3e-6, 0.7])            # the first entry is 0.3 eps from the kink at 0
    dout = np.array([1.0, 1.0])
    right = check_gradient(np.array([1.0, 1.0]), relu, x.copy(), dout)
    assert right.passed and right.kinks == 1
    wrong = check_gradient(np.array([0.5, 1.0]), relu, x.copy(), dout)   # neither one-sided slope
    assert not wrong.passed and wrong.worst == (0,)
    smooth = check_gradient(np.array([1.0, 1.0 + 1e-3]), relu, x.copy(), dout)
    assert not smooth.passed and smooth.kinks == 1 and smooth.worst == (1,)


# ------------------------------------------------------------------ correct layers: no false FAIL
def test_the_false_fails_of_issue_13_pass():
    """The layers issue 13 found failing the old comparison, though they equal torch to 1e-10."""
    rng = np.random.default_rng(13)
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True, rng=13, dtype=np.float64)
    assert check_module(gru, rng.standard_normal((3, 2, 3)), seed=13, verbose=False).passed
    for seed in range(5):
        x = np.random.default_rng(seed).standard_normal((4, 3, 2, 2))
        assert check_module(nn.BatchNorm2d(3, dtype=np.float64), x, seed=seed, verbose=False).passed
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, rng=1, dtype=np.float64)
    assert check_module(lstm, rng.standard_normal((3, 2, 3)), seed=1, verbose=False).passed
    deep = nn.GRU(1, 1, num_layers=3, rng=2, dtype=np.float64)
    assert check_module(deep, rng.standard_normal((1, 1, 1)), seed=2, verbose=False).passed


def _failures(seeds):
    """[(case, seed, report table)] of every CLI case that fails for these seeds."""
    failed = []
    for seed in seeds:
        for name, build in gradcheck_cases():
            module, inputs = build(np.random.default_rng(seed))
            report = check_module(module, *inputs, seed=seed, verbose=False, title=name)
            if not report.passed:
                failed.append((name, seed, str(report)))
    return failed


def test_every_cli_case_passes_for_100_seeds():
    """Zero false FAILs over 100 seeds x every case (about a minute on 2 cores)."""
    workers = max(1, min(2, os.cpu_count() or 1))
    chunks = [list(SEEDS)[k::workers] for k in range(workers)]
    if workers == 1:
        failed = _failures(chunks[0])
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            failed = [f for part in pool.map(_failures, chunks) for f in part]
    assert not failed, "\n\n".join(f"seed {seed}: {table}" for _, seed, table in failed[:3])


# ------------------------------------------------------------------ planted bugs: all caught
def _wrap(monkeypatch, owner, name, change):
    """Replace ``owner.name`` by a function that calls the original and passes (args, result) to ``change``.

    For a class, ``name`` is a static kernel (``ReLU._backward``) or a method whose args start with self."""
    original = getattr(owner, name)

    def mutated(*args, **kwargs):
        return change(args[1:] if is_method else args, original(*args, **kwargs))

    static = isinstance(owner, type) and isinstance(inspect.getattr_static(owner, name), staticmethod)
    is_method = isinstance(owner, type) and not static
    monkeypatch.setattr(owner, name, staticmethod(mutated) if static else mutated)


def _replace(result, index, value):
    result = list(result)
    result[index] = value
    return tuple(result)


def _shift_in_time(dx):
    """dx[t] <- dx[t + 1]: the gradient of each step lands one step early (an off-by-one in BPTT)."""
    shifted = np.zeros_like(dx)
    shifted[:-1] = dx[1:]
    return shifted


def _transpose_blocks(dw):
    """(3H, H) recurrent weight gradient with each gate's H x H block transposed."""
    hidden = dw.shape[1]
    return np.concatenate([dw[k * hidden:(k + 1) * hidden].T for k in range(dw.shape[0] // hidden)])


def _other_reset_convention(args):
    """Backward with the other reset convention than its forward: the cache says reset_after when the
    forward ran reset-before (or the reverse), and r ⊙ h stands where U_hn h + b_hn should be."""
    cache = args[-1]
    cache.reset_after = not cache.reset_after
    cache.hidden_n, cache.rh = cache.rh, cache.hidden_n
    return args


def _wrap_args(monkeypatch, owner, name, change_args):
    """Replace ``owner.name`` by a function that edits its arguments (e.g. the cache) before the original."""
    original = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *args, **kwargs: original(*change_args(args), **kwargs))


def _linear_one_row_dweight(args, result):
    dout, (x2, weight, has_bias, lead) = args   # dweight from the first row only: the batch sum forgotten
    return _replace(result, 1, dout.reshape(-1, weight.shape[0])[:1].T @ x2[:1])


def _batchnorm_dropped_mean_term(args, result):
    dout, (x2, mean, inv_std, gamma, training, shape) = args
    axes = (0,) + tuple(range(2, len(shape)))
    extra = (gamma * inv_std).reshape((1, -1) + (1,) * (len(shape) - 2)) * dout.mean(axis=axes, keepdims=True)
    return _replace(result, 0, result[0] + extra)   # dx without the -mean(dy) term of eq. B-backward


def _gru_cell_without_z_path(args, result):
    dh_next, cache = args
    z = cache[5]                                      # (x, h_prev, w_ih, w_hh, r, z, n, hn, ...)
    return _replace(result, 1, result[1] - z * dh_next)   # dh_prev misses the z ⊙ dh' term of h' = ... + z ⊙ h


def _lstm_without_forget_gate(args, result):
    hidden = result[4].shape[1]                      # (dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh)
    result = list(result)
    for k in (3, 4, 5, 6):
        if result[k] is not None:
            result[k] = result[k].copy()
            result[k][hidden:2 * hidden] = 0          # gates i, f, g, o: the f rows get no gradient
    return tuple(result)


MUTATIONS = {
    # name: (CLI case, function planting the bug, a tensor expected among the FAILs)
    "linear: bias gradient missing": (
        "Linear", lambda mp: _wrap(mp, F, "linear_backward", lambda a, r: _replace(r, 2, 0 * r[2])), "bias"),
    "linear: weight gradient of one row, batch sum forgotten": (
        "Linear (3-D input, no bias)", lambda mp: _wrap(mp, F, "linear_backward", _linear_one_row_dweight),
        "weight"),
    "relu: derivative dropped": (
        "ReLU", lambda mp: _wrap(mp, nn.ReLU, "_backward", lambda a, r: a[0]), "input[0]"),
    "tanh: 1 - y instead of 1 - y^2": (
        "Tanh", lambda mp: _wrap(mp, nn.Tanh, "_backward", lambda a, r: a[0] * (1 - a[1])), "input[0]"),
    "sigmoid: y instead of y (1 - y)": (
        "Sigmoid", lambda mp: _wrap(mp, nn.Sigmoid, "_backward", lambda a, r: a[0] * a[1]), "input[0]"),
    "softmax: the -sum(dout * p) term dropped": (
        "Softmax", lambda mp: _wrap(mp, F, "softmax_backward", lambda a, r: a[0] * a[1][0]), "input[0]"),
    "cross-entropy: mean over the batch forgotten": (
        "CrossEntropyLoss", lambda mp: _wrap(mp, F, "cross_entropy_backward", lambda a, r: r * 4), "input[0]"),
    "dropout: 1/(1-p) scaling forgotten in backward": (
        "Dropout(p=0.3)", lambda mp: _wrap(mp, F, "dropout_backward", lambda a, r: a[0] * (a[1] != 0)), "input[0]"),
    "flatten: gradient reshaped in the wrong order": (
        "Flatten", lambda mp: _wrap(mp, nn.Flatten, "backward",
                                    lambda a, r: r.reshape(-1).reshape(r.shape, order="F")), "input[0]"),
    "conv: input gradient with the kernel rotated": (
        "Conv2d 3x3 pad 1", lambda mp: _wrap_args(
            mp, F, "conv2d_backward",
            lambda a: [a[0], a[1]._replace(weight=a[1].weight[:, :, ::-1, ::-1].copy()), *a[2:]]),
        "input[0]"),
    "conv: weight gradient flipped (convolution for correlation)": (
        "Conv2d 3x2 stride 2", lambda mp: _wrap(mp, F, "conv2d_backward",
                                                lambda a, r: _replace(r, 1, r[1][:, :, ::-1, ::-1])), "weight"),
    "conv: bias gradient of the first image only": (
        "Conv2d 3x3 pad 1", lambda mp: _wrap(mp, F, "conv2d_backward",
                                             lambda a, r: _replace(r, 2, a[0][0].sum(axis=(1, 2)))), "bias"),
    "max pool: gradient to the window's first pixel, not its argmax": (
        "MaxPool2d 2", lambda mp: _wrap_args(mp, F, "maxpool2d_backward",
                                             lambda a: [a[0], a[1]._replace(argmax=0 * a[1].argmax)]), "input[0]"),
    "max pool: argmax off by one": (
        "MaxPool2d 3 stride 2 pad 1", lambda mp: _wrap_args(
            mp, F, "maxpool2d_backward", lambda a: [a[0], a[1]._replace(argmax=(a[1].argmax + 1) % 9)]), "input[0]"),
    "avg pool: divided by kh instead of kh*kw": (
        "AvgPool2d 2", lambda mp: _wrap(mp, F, "avgpool2d_backward", lambda a, r: 2 * r), "input[0]"),
    "global avg pool: not divided by H*W": (
        "AdaptiveAvgPool2d 1", lambda mp: _wrap(mp, F, "adaptive_avgpool2d_backward", lambda a, r: 9 * r),
        "input[0]"),
    "batch norm: the -mean(dy) term dropped": (
        "BatchNorm2d (train)", lambda mp: _wrap(mp, F, "batchnorm_backward", _batchnorm_dropped_mean_term),
        "input[0]"),
    "batch norm: dgamma = sum(dy), the x_hat factor dropped": (
        "BatchNorm1d (train)", lambda mp: _wrap(mp, F, "batchnorm_backward", lambda a, r: _replace(r, 1, r[2])),
        "weight"),
    "GRU: off-by-one time step in dx": (
        "GRU (reset after, PyTorch)", lambda mp: _wrap(mp, F, "gru_backward",
                                                       lambda a, r: _replace(r, 0, _shift_in_time(r[0]))), "input[0]"),
    "GRU: backward with the other reset convention": (
        "GRU (reset before, Cho et al.)", lambda mp: _wrap_args(mp, F, "gru_backward", _other_reset_convention),
        "weight_hh"),
    "GRU: no gradient into the initial state": (
        "GRU (reset after, PyTorch)", lambda mp: _wrap(mp, F, "gru_backward", lambda a, r: _replace(r, 1, 0 * r[1])),
        "input[1]"),
    "GRU: recurrent weight gradient blocks transposed": (
        "GRU (reset after, PyTorch)", lambda mp: _wrap(mp, F, "gru_backward",
                                                       lambda a, r: _replace(r, 3, _transpose_blocks(r[3]))),
        "weight_hh"),
    "GRU: a tiny scale error (1e-4) in the input weight gradient": (
        "GRU 2 layers bidirectional", lambda mp: _wrap(mp, F, "gru_backward",
                                                       lambda a, r: _replace(r, 2, r[2] * (1 + 1e-4))), "weight_ih"),
    "GRUCell: the z path into h_prev dropped (missing gate derivative)": (
        "GRUCell", lambda mp: _wrap(mp, F, "gru_step_backward", _gru_cell_without_z_path), "input[1]"),
    "LSTM: forget-gate derivative missing": (
        "LSTM", lambda mp: _wrap(mp, F, "lstm_backward", _lstm_without_forget_gate), "weight_hh"),
    "LSTM: off-by-one time step in dx": (
        "LSTM", lambda mp: _wrap(mp, F, "lstm_backward", lambda a, r: _replace(r, 0, _shift_in_time(r[0]))),
        "input[0]"),
    "RNN: recurrent weight gradient transposed": (
        "RNN tanh", lambda mp: _wrap(mp, F, "rnn_backward", lambda a, r: _replace(r, 3, r[3].T.copy())),
        "weight_hh"),
    "MSE: factor 2 of d(x^2) forgotten": (
        "MSELoss", lambda mp: _wrap(mp, F, "mse_loss_backward", lambda a, r: (r[0] / 2, r[1] / 2)), "input[0]"),
    "ConvGRU: backward with the other reset convention": (
        "ConvGRU (reset before, Ballas et al.)",
        lambda mp: _wrap_args(mp, F, "convgru_backward", _other_reset_convention), "weight_hh"),
    "ConvGRU: hidden bias gradient missing": (
        "ConvGRU (reset after, stride-free, 2 layers)",
        lambda mp: _wrap(mp, F, "convgru_backward", lambda a, r: _replace(r, 5, 0 * r[5])), "bias_hh"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_every_planted_bug_is_caught(mutation, monkeypatch):
    case, plant, expected_row = MUTATIONS[mutation]
    module, inputs = CASES[case](np.random.default_rng(0))
    assert check_module(module, *inputs, verbose=False).passed, "the case must pass without the bug"
    plant(monkeypatch)
    report = check_module(module, *inputs, verbose=False)
    failed = [row.name for row in report if not row.passed]
    assert failed, f"{mutation}: not detected\n{report}"
    assert any(expected_row in name for name in failed), f"{mutation}: {failed}\n{report}"


def test_the_mutation_set_is_large_enough():
    assert len(MUTATIONS) >= 20
