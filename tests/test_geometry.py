"""Every valid sliding-window geometry works, every invalid one is refused in one line (issue 13, §1).

Hypothesis draws the geometry (batch N from 0, channels, image H x W from 1x1, kernel up to the
padded size, non-square kernels, strides and paddings) and every layer is compared, forward and
backward in float64, with the loop kernels (functional/conv_naive.py, functional/pooling_naive.py)
and with PyTorch where it is installed.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigru.functional as F
from minigru import nn
from minigru.functional import pooling_naive

try:
    import torch
except ImportError:   # the torch comparisons are skipped, the loop-kernel ones still run
    torch = None

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def close(a, b, what):
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=what)


def tt(a):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=True)


def tn(t):
    return t.detach().numpy()


@st.composite
def window_geometry(draw, pool=False):
    """(N, C, H, W, kernel, stride, padding) that torch accepts: the kernel fits the padded image,
    and for pooling the padding is at most half the kernel."""
    N = draw(st.integers(0, 2))
    C = draw(st.integers(1, 2))
    H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    if pool:
        kh, kw = draw(st.integers(1, H + 2)), draw(st.integers(1, W + 2))
        ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
        # the padded image must still hold the kernel
        kh, kw = min(kh, H + 2 * ph), min(kw, W + 2 * pw)
        ph, pw = min(ph, kh // 2), min(pw, kw // 2)
        kh, kw = min(kh, H + 2 * ph), min(kw, W + 2 * pw)
    else:
        ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        kh, kw = draw(st.integers(1, H + 2 * ph)), draw(st.integers(1, W + 2 * pw))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return N, C, H, W, (kh, kw), stride, (ph, pw)


def _image(rng, shape, distinct=False):
    if distinct:   # no ties inside a window: the max-pool gradient then has one right answer
        return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 1.0).astype(np.float64)
    return rng.standard_normal(shape)


# ------------------------------------------------------------------ convolution
@st.composite
def conv_case(draw):
    N, C, H, W, kernel, stride, padding = draw(window_geometry())
    if draw(st.booleans()) and draw(st.booleans()):   # 'same' padding (stride 1), even kernels included
        stride, padding = (1, 1), "same"
    return N, C, draw(st.integers(1, 3)), H, W, kernel, stride, padding, draw(st.booleans())


@SETTINGS
@given(case=conv_case(), seed=st.integers(0, 2**16))
def test_conv2d_every_geometry(case, seed):
    N, C, K, H, W, kernel, stride, padding, bias = case
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(C, K, kernel, stride, padding, bias=bias, rng=seed, dtype=np.float64)
    w = conv.weight.data
    b = conv.bias.data if bias else None
    for repeat in range(2):   # the second pass reuses the work buffers of the first
        x = rng.standard_normal((N, C, H, W))
        conv.zero_grad()
        out = conv(x)
        dout = rng.standard_normal(out.shape)
        dx = conv.backward(dout)
        ref_out, cache = F.conv2d_naive_forward(x, w, b, stride, padding)
        ref_dx, ref_dw, ref_db = F.conv2d_naive_backward(dout, cache)
        close(out, ref_out, "out vs naive")
        close(dx, ref_dx, "dx vs naive")
        close(conv.weight.grad, ref_dw, "dweight vs naive")
        if bias:
            close(conv.bias.grad, ref_db, "dbias vs naive")
    # input_grad=False: the same weight gradients, no input gradient
    conv.input_grad = False
    conv.zero_grad()
    conv(x)
    assert conv.backward(dout) is None
    close(conv.weight.grad, ref_dw, "dweight with input_grad=False")
    if torch is None:
        return
    xt, wt = tt(x), tt(w)
    bt = tt(b) if bias else None
    ot = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    ot.backward(torch.tensor(dout))
    close(out, tn(ot), "out vs torch")
    close(ref_dx, tn(xt.grad), "dx vs torch")
    close(ref_dw, tn(wt.grad), "dweight vs torch")


def test_conv2d_named_narrow_images():
    """The cases of issue 13: 'same' windows wider than the image, backward on a 1x16 image, N = 0."""
    rng = np.random.default_rng(0)
    for shape, kernel, padding in [((1, 2, 1, 4), 3, 1), ((1, 2, 2, 2), 5, 2), ((1, 2, 3, 1), 5, 2),
                                   ((1, 2, 1, 16), 3, 1), ((0, 2, 4, 4), 3, 1), ((2, 2, 1, 1), 7, 3)]:
        conv = nn.Conv2d(2, 2, kernel, padding=padding, rng=1, dtype=np.float64)
        x = rng.standard_normal(shape)
        out = conv(x)
        dout = rng.standard_normal(out.shape)
        ref_out, cache = F.conv2d_naive_forward(x, conv.weight.data, conv.bias.data, 1, padding)
        close(out, ref_out, f"{shape} out")
        close(conv.backward(dout), F.conv2d_naive_backward(dout, cache)[0], f"{shape} dx")


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((1, 1, 2, 2), 5, 1, 1), ((1, 1, 3, 3), (1, 6), 1, 1), ((1, 1, 1, 4), 2, 1, 0)])
def test_conv2d_refuses_kernel_larger_than_padded_image(shape, kernel, stride, padding):
    conv = nn.Conv2d(1, 1, kernel, stride, padding, dtype=np.float64)
    with pytest.raises(ValueError, match="smaller than the") as err:
        conv(np.zeros(shape))
    assert "\n" not in str(err.value)
    if torch is not None:   # torch refuses the same geometries
        with pytest.raises(RuntimeError):
            torch.nn.functional.conv2d(torch.zeros(shape, dtype=torch.float64),
                                       torch.zeros((1, 1, *np.broadcast_to(kernel, 2)), dtype=torch.float64),
                                       stride=stride, padding=padding)


# ------------------------------------------------------------------ pooling
@SETTINGS
@given(geometry=window_geometry(pool=True), relu=st.booleans(), seed=st.integers(0, 2**16))
def test_maxpool2d_every_geometry(geometry, relu, seed):
    N, C, H, W, kernel, stride, padding = geometry
    rng = np.random.default_rng(seed)
    pool = nn.MaxPool2d(kernel, stride, padding, relu=relu)
    for repeat in range(2):
        x = _image(rng, (N, C, H, W), distinct=True)
        out = pool(x)
        dout = rng.standard_normal(out.shape)
        dx = pool.backward(dout)
        ref_out, cache = pooling_naive.maxpool2d_naive_forward(x, kernel, stride, padding)
        ref_dx = pooling_naive.maxpool2d_naive_backward(dout * (ref_out > 0) if relu else dout, cache)
        close(out, np.maximum(ref_out, 0) if relu else ref_out, "out vs naive")
        close(dx, ref_dx, "dx vs naive")
    if torch is None:
        return
    xt = tt(x)
    ot = torch.nn.functional.max_pool2d(torch.relu(xt) if relu else xt, kernel, stride, padding)
    ot.backward(torch.tensor(dout))
    close(out, tn(ot), "out vs torch")
    close(dx, tn(xt.grad), "dx vs torch")


@SETTINGS
@given(geometry=window_geometry(pool=True), seed=st.integers(0, 2**16))
def test_avgpool2d_every_geometry(geometry, seed):
    N, C, H, W, kernel, stride, padding = geometry
    rng = np.random.default_rng(seed)
    pool = nn.AvgPool2d(kernel, stride, padding)
    for repeat in range(2):
        x = _image(rng, (N, C, H, W))
        out = pool(x)
        dout = rng.standard_normal(out.shape)
        dx = pool.backward(dout)
        ref_out, cache = pooling_naive.avgpool2d_naive_forward(x, kernel, stride, padding)
        close(out, ref_out, "out vs naive")
        close(dx, pooling_naive.avgpool2d_naive_backward(dout, cache), "dx vs naive")
    if torch is None:
        return
    xt = tt(x)
    ot = torch.nn.functional.avg_pool2d(xt, kernel, stride, padding)
    ot.backward(torch.tensor(dout))
    close(out, tn(ot), "out vs torch")
    close(dx, tn(xt.grad), "dx vs torch")


@pytest.mark.parametrize("layer", [nn.MaxPool2d, nn.AvgPool2d])
def test_pooling_refuses_window_larger_than_padded_image(layer):
    with pytest.raises(ValueError, match="smaller than the") as err:
        layer(4, padding=1)(np.zeros((1, 1, 1, 1)))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="half of the kernel"):
        layer(2, padding=2)


@st.composite
def adaptive_case(draw):
    N, C = draw(st.integers(0, 2)), draw(st.integers(1, 2))
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    size = (draw(st.one_of(st.none(), st.integers(1, 8))), draw(st.one_of(st.none(), st.integers(1, 8))))
    return N, C, H, W, draw(st.sampled_from([size, size[0]])) if size[0] is not None else size


def _adaptive_naive(x, size):
    """Loop reference of torch's adaptive windows: rows [floor(a*H/Ho), ceil((a+1)*H/Ho))."""
    N, C, H, W = x.shape
    oh, ow = (size, size) if not isinstance(size, tuple) else size
    oh, ow = H if oh is None else oh, W if ow is None else ow
    out = np.zeros((N, C, oh, ow))
    windows = {}
    for a in range(oh):
        for b in range(ow):
            rows = slice(a * H // oh, -(-(a + 1) * H // oh))
            cols = slice(b * W // ow, -(-(b + 1) * W // ow))
            out[:, :, a, b] = x[:, :, rows, cols].mean(axis=(2, 3))
            windows[a, b] = rows, cols
    return out, windows


@SETTINGS
@given(case=adaptive_case(), seed=st.integers(0, 2**16))
def test_adaptive_avgpool2d_every_output_size(case, seed):
    """Any output size, dividing the input or not, smaller or larger than it, None entries."""
    N, C, H, W, size = case
    rng = np.random.default_rng(seed)
    pool = nn.AdaptiveAvgPool2d(size)
    x = rng.standard_normal((N, C, H, W))
    out = pool(x)
    dout = rng.standard_normal(out.shape)
    dx = pool.backward(dout)
    ref_out, windows = _adaptive_naive(x, size)
    ref_dx = np.zeros_like(x)
    for (a, b), (rows, cols) in windows.items():
        share = dout[:, :, a, b] / ((rows.stop - rows.start) * (cols.stop - cols.start))
        ref_dx[:, :, rows, cols] += share[:, :, None, None]
    close(out, ref_out, "out vs naive")
    close(dx, ref_dx, "dx vs naive")
    if torch is None:
        return
    xt = tt(x)
    ot = torch.nn.functional.adaptive_avg_pool2d(xt, size)
    ot.backward(torch.tensor(dout))
    close(out, tn(ot), "out vs torch")
    close(dx, tn(xt.grad), "dx vs torch")


@pytest.mark.parametrize("layer", [lambda: nn.Conv2d(1, 1, 1, dtype=np.float64), lambda: nn.MaxPool2d(1),
                                   lambda: nn.AvgPool2d(1), lambda: nn.AdaptiveAvgPool2d(1)])
@pytest.mark.parametrize("shape", [(1, 1, 0, 4), (2, 1, 3, 0), (1, 0, 2, 2)])
def test_empty_images_are_refused_in_one_line(layer, shape):
    """Only the batch may be empty (as in torch): no output made of padding alone."""
    if shape[1] == 0 and isinstance(layer(), nn.Conv2d):
        shape = (1, 1, 0, 0)
    with pytest.raises(ValueError, match="empty") as err:
        layer()(np.zeros(shape))
    assert "\n" not in str(err.value)


def test_adaptive_avgpool2d_refuses_bad_sizes_in_one_line():
    for size in (0, (2, 0), (1, 2, 3)):
        with pytest.raises(ValueError, match="output_size") as err:
            nn.AdaptiveAvgPool2d(size)(np.zeros((1, 1, 5, 6)))
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ ConvGRU
def _torch_convgru(x, layers, strides, paddings, reset_after, h0=None):
    """A reference ConvGRU written with torch's conv2d and autograd (eqs. CG1-CG5)."""
    conv = torch.nn.functional.conv2d
    inputs = x
    finals = []
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        hidden = w_hh.shape[1]
        pad_h = (w_hh.shape[2] // 2, w_hh.shape[3] // 2)
        w_ir, w_iz, w_in = w_ih.split(hidden)
        w_hr, w_hz, w_hn = w_hh.split(hidden)
        b = [None] * 6 if b_ih is None else list(b_ih.split(hidden)) + list(b_hh.split(hidden))
        h = None if h0 is None else h0[k]
        states = []
        for t in range(inputs.shape[0]):
            xr = conv(inputs[t], w_ir, b[0], strides[k], paddings[k])
            xz = conv(inputs[t], w_iz, b[1], strides[k], paddings[k])
            xn = conv(inputs[t], w_in, b[2], strides[k], paddings[k])
            if h is None:
                h = torch.zeros((xr.shape[0], hidden, *xr.shape[2:]), dtype=x.dtype)
            r = torch.sigmoid(xr + conv(h, w_hr, b[3], 1, pad_h))
            z = torch.sigmoid(xz + conv(h, w_hz, b[4], 1, pad_h))
            if reset_after:
                n = torch.tanh(xn + r * conv(h, w_hn, b[5], 1, pad_h))
            else:
                n = torch.tanh(xn + conv(r * h, w_hn, b[5], 1, pad_h))
            h = (1 - z) * n + z * h
            states.append(h)
        inputs = torch.stack(states)
        finals.append(h)
    return inputs, torch.stack(finals)


def _naive_convgru_step(x, h, w_ih, w_hh, b_ih, b_hh, stride, padding, reset_after):
    """One ConvGRU step with the loop convolution (eqs. CG1-CG5), forward only."""
    hidden = w_hh.shape[1]
    pad_h = (w_hh.shape[2] // 2, w_hh.shape[3] // 2)
    gx = F.conv2d_naive_forward(x, w_ih, b_ih, stride, padding)[0]
    if h is None:
        h = np.zeros((x.shape[0], hidden, *gx.shape[2:]))
    sig = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    gh = F.conv2d_naive_forward(h, w_hh, b_hh, 1, pad_h)[0]
    r = sig(gx[:, :hidden] + gh[:, :hidden])
    z = sig(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    if reset_after:
        n = np.tanh(gx[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
    else:
        b_n = None if b_hh is None else b_hh[2 * hidden:]
        n = np.tanh(gx[:, 2 * hidden:] + F.conv2d_naive_forward(r * h, w_hh[2 * hidden:], b_n, 1, pad_h)[0])
    return (1 - z) * n + z * h


@st.composite
def convgru_case(draw):
    T, N = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    c_in, hidden = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H, W = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5])))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    input_kernel = (draw(st.integers(1, H + 2 * ph)), draw(st.integers(1, W + 2 * pw)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    layers = draw(st.integers(1, 2))
    return T, N, c_in, hidden, H, W, kernel, input_kernel, stride, (ph, pw), layers, draw(st.booleans()), \
        draw(st.booleans())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=convgru_case(), seed=st.integers(0, 2**16))
def test_convgru_every_geometry(case, seed):
    T, N, c_in, hidden, H, W, kernel, input_kernel, stride, padding, layers, reset_after, bias = case
    rng = np.random.default_rng(seed)
    model = nn.ConvGRU(c_in, hidden, kernel, num_layers=layers, bias=bias, reset_after=reset_after,
                       input_kernel_size=input_kernel, input_stride=stride, input_padding=padding,
                       rng=seed, dtype=np.float64)
    x = rng.standard_normal((T, N, c_in, H, W))
    out, h_n = model(x)
    dout, dh_n = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0 = model.backward(dout, dh_n)
    params = [[getattr(model, f"{name}_l{k}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
              for k in range(layers)]
    arrays = [[None if p is None else p.data for p in ps] for ps in params]
    strides = [stride] + [1] * (layers - 1)
    paddings = [padding] + [(kernel[0] // 2, kernel[1] // 2)] * (layers - 1)
    # forward against the loop convolution, step by step
    inputs = x
    for k in range(layers):
        h, states = None, []
        for t in range(T):
            h = _naive_convgru_step(inputs[t], h, *arrays[k], strides[k], paddings[k], reset_after)
            states.append(h)
        inputs = np.stack(states)
        close(h_n[k], h, f"h_n[{k}] vs naive")
    close(out, inputs, "out vs naive")
    # the one-step cell on the same geometry
    cell = nn.ConvGRUCell(c_in, hidden, kernel, bias=bias, reset_after=reset_after, input_kernel_size=input_kernel,
                          input_stride=stride, input_padding=padding, rng=seed, dtype=np.float64)
    h1 = cell(x[0])
    cell_params = (cell.weight_ih, cell.weight_hh, getattr(cell, "bias_ih", None), getattr(cell, "bias_hh", None))
    cell_arrays = [None if p is None else p.data for p in cell_params]
    close(h1, _naive_convgru_step(x[0], None, *cell_arrays, stride, padding, reset_after), "ConvGRUCell vs naive")
    dh1 = rng.standard_normal(h1.shape)
    cell_dx, _ = cell.backward(dh1)
    if torch is None:
        return
    xt = tt(x)
    tparams = [[None if a is None else tt(a) for a in ps] for ps in arrays]
    ot, hnt = _torch_convgru(xt, tparams, strides, paddings, reset_after)
    (ot * torch.tensor(dout)).sum().add((hnt * torch.tensor(dh_n)).sum()).backward()
    close(out, tn(ot), "out vs torch")
    close(dx, tn(xt.grad), "dx vs torch")
    for ps, tps in zip(params, tparams):
        for p, t in zip(ps, tps):
            if p is not None:
                close(p.grad, tn(t.grad), "parameter gradient vs torch")
    # the cell's backward against torch's
    xt1 = tt(x[0])
    cparams = [None if p is None else tt(p.data) for p in cell_params]
    ht = _torch_convgru(xt1[None], [cparams], [stride], [padding], reset_after)[0][0]
    ht.backward(torch.tensor(dh1))
    close(cell_dx, tn(xt1.grad), "ConvGRUCell dx vs torch")
