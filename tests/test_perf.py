"""The speed helpers change nothing but speed: minigru.perf, the fused ReLU/max-pool, Conv2d(input_grad=False),
the flat-shift im2col/col2im, and float32 staying float32 (a dtype audit). No timing is asserted here."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigru.functional as F
import minigru.perf as perf
from minigru import backend, nn
from minigru.functional import conv as conv_module
from minigru.gradcheck import check_module, numerical_gradient, rel_error


# ------------------------------------------------------------------------- minigru.perf
def test_import_minigru_does_not_import_perf():
    code = "import sys, minigru; print('minigru.perf' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_tune_host_memory_is_harmless_and_repeatable():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    before = F.conv2d_forward(x, w, None, 1, 1)[0]
    first = perf.tune_host_memory()
    second = perf.tune_host_memory()
    assert first == second
    assert perf.host_memory_tuned() == (first or {})
    if first:   # glibc: all three knobs accepted
        assert set(first) == {"M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "M_ARENA_MAX"}
        big = np.ones((1 << 22,), dtype=np.float32)            # 16 MiB, now from the heap
        assert float(big.sum()) == float(1 << 22)
    np.testing.assert_array_equal(F.conv2d_forward(x, w, None, 1, 1)[0], before)


def test_tune_host_memory_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(perf.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert perf.tune_host_memory() == {}
    monkeypatch.setattr(perf.platform, "system", lambda: "Darwin")
    assert perf.tune_host_memory() == {}


def test_tune_host_memory_rejects_a_bad_threshold():
    with pytest.raises(ValueError, match="positive"):
        perf.tune_host_memory(0)


def test_cpu_count_and_blas_info():
    assert perf.cpu_count() >= 1
    pytest.importorskip("threadpoolctl")
    info = perf.blas_info()
    assert info, "NumPy's BLAS should be visible to threadpoolctl"
    assert {"internal_api", "version", "num_threads"} <= set(info[0])


OPENBLAS = {"internal_api": "openblas", "version": "0.3.31", "architecture": "SkylakeX", "num_threads": 1}


@pytest.mark.parametrize("libraries, coretype, expected", [
    ([OPENBLAS], None, "openblas 0.3.31 with its SkylakeX kernels"),
    ([{**OPENBLAS, "architecture": "Haswell"}], "Haswell",
     "openblas 0.3.31 with its Haswell kernels (set by OPENBLAS_CORETYPE=Haswell)"),
    ([{"internal_api": "mkl", "version": "2024.2", "architecture": None}], "Haswell", "mkl 2024.2"),   # not OpenBLAS's
    ([], "Haswell", ""),                                                          # threadpoolctl missing
])
def test_blas_summary_names_the_kernels_and_who_chose_them(monkeypatch, libraries, coretype, expected):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    if coretype:
        monkeypatch.setenv("OPENBLAS_CORETYPE", coretype)
    assert perf.blas_summary(libraries) == expected


@pytest.mark.parametrize("libraries, expected", [
    ([OPENBLAS], True),
    ([{**OPENBLAS, "architecture": "Cooperlake"}], True),
    ([{**OPENBLAS, "architecture": "SAPPHIRERAPIDS"}], True),
    ([{**OPENBLAS, "architecture": "Haswell"}], False),           # e.g. forced by OPENBLAS_CORETYPE=Haswell
    ([{**OPENBLAS, "architecture": "Zen"}], False),
    ([{**OPENBLAS, "architecture": None}], False),
    ([{"internal_api": "mkl", "version": "2024.2", "architecture": None}], False),   # does not name its kernels
    ([], False),                                                  # threadpoolctl missing
])
def test_blas_has_avx512_kernels_reads_openblas_kernel_name(libraries, expected):
    assert perf.blas_has_avx512_kernels(libraries) is expected


def test_blas_has_avx512_kernels_of_this_process_matches_its_blas_info():
    pytest.importorskip("threadpoolctl")
    assert perf.blas_has_avx512_kernels() is perf.blas_has_avx512_kernels(perf.blas_info())


def test_avx512_check_follows_openblas_coretype_in_a_fresh_process():
    # OpenBLAS reads OPENBLAS_CORETYPE when it loads: forcing Haswell kernels must turn the answer (and with
    # it the Winograd threshold of algorithm="auto") to the AVX2 one, on any x86 CPU.
    pytest.importorskip("threadpoolctl")
    if "openblas" not in [b.get("internal_api") for b in perf.blas_info()[:1]]:
        pytest.skip("NumPy's BLAS is not OpenBLAS")
    code = ("import minigru.perf as p, minigru.functional.winograd as w; "
            "print(p.blas_info()[0]['architecture'], p.blas_has_avx512_kernels(), w.winograd_min_channels())")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["Haswell", "False", "64"], out


def test_blas_threads_limits_and_restores():
    pytest.importorskip("threadpoolctl")
    before = [b["num_threads"] for b in perf.blas_info()]
    with perf.blas_threads(1):
        assert all(b["num_threads"] == 1 for b in perf.blas_info())
    assert [b["num_threads"] for b in perf.blas_info()] == before
    with pytest.raises(ValueError):
        with perf.blas_threads(0):
            pass


# -------------------------------------------------------------- ReLU fused into max-pooling
@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_maxpool_relu_equals_relu_then_maxpool(xp, kernel, stride, padding):
    rng = np.random.default_rng(3)
    x = xp.asarray(rng.standard_normal((2, 3, 7, 6)))
    x[0, 0] = -1.0                                             # a region where every window is negative
    ref_relu, relu_cache = F.relu_forward(x)
    ref, pool_cache = F.maxpool2d_forward(ref_relu, kernel, stride, padding)
    got, cache = F.maxpool2d_forward(x, kernel, stride, padding, relu=True)
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(ref))
    dout = xp.asarray(rng.standard_normal(ref.shape))
    expected = F.relu_backward(F.maxpool2d_backward(dout, pool_cache), relu_cache)
    np.testing.assert_array_equal(backend.to_numpy(F.maxpool2d_backward(dout, cache)), backend.to_numpy(expected))


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1)])
def test_maxpool_relu_gradcheck(xp, kernel, stride, padding):
    rng = np.random.default_rng(4)
    x = xp.asarray(rng.permutation(2 * 2 * 6 * 5).reshape(2, 2, 6, 5) / 7.0 - 4.0)   # distinct values, both signs
    out, cache = F.maxpool2d_forward(x, kernel, stride, padding, relu=True)
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx = F.maxpool2d_backward(dout, cache)
    num = numerical_gradient(lambda v: F.maxpool2d_forward(v, kernel, stride, padding, relu=True)[0], x, dout)
    assert rel_error(dx, num) <= 1e-6


def test_maxpool_layer_relu_option_gradcheck():
    x = np.random.default_rng(5).permutation(2 * 2 * 4 * 4).reshape(2, 2, 4, 4) / 5.0 - 3.0
    assert check_module(nn.MaxPool2d(2, relu=True), x, verbose=False).max_rel_error <= 1e-6


def _cnn(rng):
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 5, 3, padding=1, rng=rng), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(5 * 2 * 2, 3, rng=rng), nn.ReLU()).double()


def test_fuse_relu_maxpool_keeps_outputs_gradients_and_keys():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 8, 8))
    model = _cnn(7)
    keys = list(model.state_dict())
    out = model(x)
    dout = rng.standard_normal(out.shape)
    dx = model.backward(dout)
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    assert nn.fuse_relu_maxpool(model) == 2                    # ReLU->Pool and Pool->ReLU; not the last ReLU
    assert [type(m).__name__ for m in model][:6] == ["Conv2d", "Identity", "MaxPool2d", "Conv2d", "MaxPool2d",
                                                     "Identity"]
    assert type(model[8]) is nn.ReLU and model[2].relu and model[4].relu
    assert "relu=True" in repr(model[2])
    assert list(model.state_dict()) == keys
    np.testing.assert_array_equal(model(x), out)
    np.testing.assert_array_equal(model.backward(dout), dx)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, grads[n])
    assert nn.fuse_relu_maxpool(model) == 0                    # nothing left to fuse


# ----------------------------------------------------------------- Conv2d(input_grad=False)
def test_conv_without_input_gradient_keeps_parameter_gradients():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 5, 5))
    full = nn.Conv2d(3, 4, 3, padding=1, rng=9).double()
    skip = nn.Conv2d(3, 4, 3, padding=1, input_grad=False, rng=9).double()
    dout = rng.standard_normal(full(x).shape)
    assert full.backward(dout) is not None
    skip(x)
    assert skip.backward(dout) is None
    np.testing.assert_array_equal(skip.weight.grad, full.weight.grad)
    np.testing.assert_array_equal(skip.bias.grad, full.bias.grad)
    assert "input_grad=False" in repr(skip) and "input_grad" not in repr(full)
    assert list(skip.state_dict()) == ["weight", "bias"]


# ------------------------------------------------- flat-shift im2col / col2im ("same" size)
def _reference_im2col(x, kh, kw, pads):
    """The definition (eq. C4), with an explicitly padded image: cols (C*kh*kw, N*H*W)."""
    top, bottom, left, right = pads
    N, C, H, W = x.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    cols = np.empty((C, kh, kw, N, H, W))
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xpad[:, :, i:i + H, j:j + W].transpose(1, 0, 2, 3)
    return cols.reshape(C * kh * kw, N * H * W)


SAME_CASES = [((2, 3, 5, 6), 3, 3, 1), ((1, 2, 7, 4), 3, 3, 1), ((2, 1, 4, 20), 3, 3, 1),
              ((2, 2, 5, 5), 5, 5, 2), ((2, 2, 6, 5), 2, 4, "same"), ((1, 1, 3, 3), 1, 3, (0, 1))]


@pytest.mark.parametrize("shape, kh, kw, padding", SAME_CASES)
def test_same_size_im2col_and_col2im_match_the_definition(shape, kh, kw, padding):
    rng = np.random.default_rng(10)
    x = rng.standard_normal(shape)
    g = conv_module.conv_geometry(shape, (kh, kw), 1, padding)
    assert conv_module._is_same_size(g)
    expected = _reference_im2col(x, kh, kw, g.pads)
    np.testing.assert_array_equal(conv_module._im2col_same_size(x, g), expected)
    np.testing.assert_array_equal(conv_module._im2col_same_size(x, g, chunk_bytes=1), expected)  # one channel a time
    np.testing.assert_array_equal(F.im2col(x, kh, kw, 1, padding, merge_batch=True), expected)
    c = rng.standard_normal(expected.shape)
    # col2im is the adjoint: <im2col(x), c> = <x, col2im(c)> for every x, so col2im(c) = d<expected, c>/dx
    dx_ref = np.zeros(shape)
    for flat in range(x.size):
        e = np.zeros(x.size)
        e[flat] = 1
        dx_ref.reshape(-1)[flat] = (_reference_im2col(e.reshape(shape), kh, kw, g.pads) * c).sum()
    for merge in (True, False):
        cc = c if merge else c.reshape(-1, shape[0], shape[2] * shape[3]).transpose(1, 0, 2).copy()
        for overwrite in (False, True):
            work = cc.copy()
            got = conv_module._col2im_same_size(work, g, merge, may_overwrite=overwrite)
            np.testing.assert_allclose(got, dx_ref, rtol=1e-12, atol=1e-12)
            if not overwrite:
                np.testing.assert_array_equal(work, cc)
        np.testing.assert_allclose(F.col2im(cc, shape, kh, kw, 1, padding, merge_batch=merge), dx_ref,
                                   rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 40), w=st.integers(1, 40),
       kh=st.integers(1, 5), kw=st.integers(1, 5), chunk=st.sampled_from([1, 100, 1 << 20]))
def test_im2col_of_same_size_windows_matches_the_definition_at_any_width(n, c, h, w, kh, kw, chunk):
    # F.im2col takes the flat shifts for every "same"-size window on the CPU, wide images included (they were
    # only used below 16 pixels before): compare with the definition for sizes on both sides of that old line.
    x = np.random.default_rng(h * 41 + w).standard_normal((n, c, h, w))
    g = conv_module.conv_geometry(x.shape, (kh, kw), 1, "same")
    expected = _reference_im2col(x, kh, kw, g.pads)
    np.testing.assert_array_equal(F.im2col(x, kh, kw, 1, "same", merge_batch=True), expected)
    np.testing.assert_array_equal(conv_module._im2col_same_size(x, g, chunk_bytes=chunk), expected)


# ----------------------------------------------------------------------- float32 dtype audit
def _arrays_in(obj, seen=None):
    """Every NumPy array inside a cache (tuples, lists, dicts, nested)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _arrays_in(item)


@pytest.mark.parametrize("name", ["seed", "cnngru"])
def test_float32_training_step_stays_float32(name):
    models = pytest.importorskip("minigru.models")
    model = models.SeedCNN(rng=0) if name == "seed" else models.CNNGRU(rng=0, hidden_size=8)
    nn.fuse_relu_maxpool(model)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    caches = {}
    originals = nn.Module._save_cache

    def recording_save(self, cache):
        caches[id(self)] = (type(self).__name__, cache)
        originals(self, cache)

    nn.Module._save_cache = recording_save
    try:
        logits = model(x)
    finally:
        nn.Module._save_cache = originals
    assert logits.dtype == np.float32
    for layer, cache in caches.values():
        for a in _arrays_in(cache):
            assert a.dtype.kind != "f" or a.dtype == np.float32, f"{layer} caches a {a.dtype} array"
    loss = nn.CrossEntropyLoss()
    loss(logits, rng.integers(0, 10, 3))
    dx = model.backward(loss.backward())
    assert dx.dtype == np.float32
    for n, p in model.named_parameters():
        assert p.grad.dtype == np.float32, n
