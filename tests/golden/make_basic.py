"""Write tests/golden/basic.npz: PyTorch's numbers for the basic layers, so the tests can compare without torch.

Run from the repository root with torch installed (CPU is enough)::

    python tests/golden/make_basic.py

Everything is float64. Inputs and weights come from a seeded NumPy
Generator; torch computes outputs and gradients (autograd) with those exact
weights. Keys are ``"<case>.<name>"``, e.g. ``"linear.dx"``; the tests read
them with ``np.load(path, allow_pickle=False)``. The file is a few tens of KB.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("basic.npz")
rng = np.random.default_rng(20240601)
data: dict[str, np.ndarray] = {}


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def put(case, **arrays):
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().numpy()
        data[f"{case}.{name}"] = np.array(a)   # a copy: buffers such as running_mean change in place later


def linear_case():
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    dout = rng.standard_normal((2, 3, 5))
    xt, wt, bt = t(x, True), t(w, True), t(b, True)
    out = torch.nn.functional.linear(xt, wt, bt)
    out.backward(t(dout))
    put("linear", x=x, weight=w, bias=b, dout=dout, out=out, dx=xt.grad, dweight=wt.grad, dbias=bt.grad)


def activation_cases():
    x = rng.standard_normal((3, 5)) * 3
    dout = rng.standard_normal((3, 5))
    for name, fn in (("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                     ("softmax", lambda a: torch.softmax(a, dim=1)),
                     ("log_softmax", lambda a: torch.log_softmax(a, dim=1))):
        xt = t(x, True)
        out = fn(xt)
        out.backward(t(dout))
        put(name, x=x, dout=dout, out=out, dx=xt.grad)


def dropout_case():
    x, dout = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    keep = rng.random((4, 6)) >= 0.4
    xt = t(x, True)
    out = xt * t(keep) / (1 - 0.4)          # torch's inverted dropout with this mask
    out.backward(t(dout))
    put("dropout", x=x, dout=dout, keep=keep, out=out, dx=xt.grad)


def batchnorm_case(case, module, shape, momentum):
    bn = module(shape[1], momentum=momentum).double()
    with torch.no_grad():
        bn.weight.copy_(t(rng.uniform(0.5, 1.5, shape[1])))
        bn.bias.copy_(t(rng.standard_normal(shape[1])))
    put(case, weight=bn.weight, bias=bn.bias)
    for step in range(3):                   # three training steps: running statistics
        x = rng.standard_normal(shape) * 2 + 1
        dout = rng.standard_normal(shape)
        xt = t(x, True)
        out = bn(xt)
        out.backward(t(dout))
        put(f"{case}.train{step}", x=x, dout=dout, out=out, dx=xt.grad, dweight=bn.weight.grad,
            dbias=bn.bias.grad, running_mean=bn.running_mean, running_var=bn.running_var)
        bn.weight.grad = None
        bn.bias.grad = None
    bn.eval()
    x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
    xt = t(x, True)
    out = bn(xt)
    out.backward(t(dout))
    put(f"{case}.eval", x=x, dout=dout, out=out, dx=xt.grad, dweight=bn.weight.grad, dbias=bn.bias.grad)


def cross_entropy_cases():
    N, C = 5, 4
    logits = rng.standard_normal((N, C)) * 2
    targets = rng.integers(0, C, N)
    weight = rng.uniform(0.2, 2.0, C)
    dout_none = rng.standard_normal(N)
    put("ce", logits=logits, targets=targets.astype(np.int64), weight=weight, dout_none=dout_none)
    for reduction in ("mean", "sum", "none"):
        for smoothing in (0.0, 0.15):
            for weighted in (False, True):
                zt = t(logits, True)
                loss = torch.nn.functional.cross_entropy(zt, torch.tensor(targets),
                                                         weight=t(weight) if weighted else None,
                                                         reduction=reduction, label_smoothing=smoothing)
                loss.backward(t(dout_none) if reduction == "none" else None)
                put(f"ce.{reduction}.{smoothing}.{int(weighted)}", loss=loss, dlogits=zt.grad)


def main():
    linear_case()
    activation_cases()
    dropout_case()
    batchnorm_case("bn1d", torch.nn.BatchNorm1d, (6, 3), 0.1)
    batchnorm_case("bn1d3", torch.nn.BatchNorm1d, (3, 2, 4), None)
    batchnorm_case("bn2d", torch.nn.BatchNorm2d, (3, 2, 3, 5), 0.1)
    cross_entropy_cases()
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(data)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
