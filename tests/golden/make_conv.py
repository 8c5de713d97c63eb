"""Write tests/golden/conv.npz: PyTorch's numbers for Conv2d and the pooling layers (tests run without torch).

Run from the repository root with torch installed (CPU is enough)::

    python tests/golden/make_conv.py

Everything is float64. Inputs and weights come from a seeded NumPy
Generator; torch computes outputs and gradients (autograd) with those exact
weights. Keys are ``"<case>.<name>"``, e.g. ``"conv_stride2.dx"``; each case
also stores its arguments as a JSON string under ``"<case>.args"``. The tests
read the file with ``np.load(path, allow_pickle=False)``. It is a few tens of KB.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("conv.npz")
rng = np.random.default_rng(20240617)
data: dict[str, np.ndarray] = {}

# name: (x shape, out_channels, kernel_size, stride, padding, bias)
CONV_CASES = {
    "conv_basic": ((2, 3, 6, 6), 4, 3, 1, 1, True),
    "conv_stride2": ((2, 2, 7, 7), 3, 3, 2, 0, True),
    "conv_nonsquare": ((1, 2, 5, 8), 3, (2, 3), (2, 1), (1, 2), True),
    "conv_1x1_nobias": ((2, 4, 3, 5), 2, 1, 1, 0, False),
    "conv_same_even": ((2, 1, 5, 6), 2, (2, 4), 1, "same", True),
}
# name: (torch function, x shape, keyword arguments)
POOL_CASES = {
    "maxpool_2": ("max_pool2d", (2, 3, 6, 6), {"kernel_size": 2}),
    "maxpool_3s2p1": ("max_pool2d", (2, 2, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    "maxpool_nonsquare": ("max_pool2d", (1, 2, 5, 7), {"kernel_size": [2, 3], "stride": [1, 2], "padding": [1, 1]}),
    "avgpool_2": ("avg_pool2d", (2, 3, 6, 6), {"kernel_size": 2}),
    "avgpool_3s2p1": ("avg_pool2d", (2, 2, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    "adaptive_1": ("adaptive_avg_pool2d", (2, 3, 5, 7), {"output_size": 1}),
    "adaptive_2x3": ("adaptive_avg_pool2d", (2, 2, 4, 6), {"output_size": [2, 3]}),
}


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def put(case, args, **arrays):
    data[f"{case}.args"] = np.array(json.dumps(args))
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().numpy()
        data[f"{case}.{name}"] = np.array(a)


def conv_cases():
    for case, (x_shape, out_channels, kernel, stride, padding, bias) in CONV_CASES.items():
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        x = rng.standard_normal(x_shape)
        w = rng.standard_normal((out_channels, x_shape[1], kh, kw))
        b = rng.standard_normal(out_channels) if bias else None
        xt, wt = t(x, True), t(w, True)
        bt = t(b, True) if bias else None
        out = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
        dout = rng.standard_normal(tuple(out.shape))
        out.backward(t(dout))
        arrays = dict(x=x, weight=w, dout=dout, out=out, dx=xt.grad, dweight=wt.grad)
        if bias:
            arrays.update(bias=b, dbias=bt.grad)
        put(case, {"kernel_size": kernel, "stride": stride, "padding": padding, "bias": bias}, **arrays)


def pool_cases():
    for case, (fn, x_shape, kwargs) in POOL_CASES.items():
        x = rng.standard_normal(x_shape)
        xt = t(x, True)
        out = getattr(torch.nn.functional, fn)(xt, **kwargs)
        dout = rng.standard_normal(tuple(out.shape))
        out.backward(t(dout))
        put(case, {"function": fn, **kwargs}, x=x, dout=dout, out=out, dx=xt.grad)


if __name__ == "__main__":
    conv_cases()
    pool_cases()
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB, {len(data)} arrays)")
