"""Grading tests of exercise `conv`: the naive convolution and the GEMM parts of the im2col one
(docs/derivations.md eqs. C1-C10).

x: (N, C, H, W), weight: (K, C, kh, kw), bias: (K,) or None; out: (N, K, Ho, Wo).
"""
import numpy as np
import pytest

EXERCISE = "conv"
CASES = {
    "pad1_bias": {"x": (2, 2, 4, 5), "weight": (3, 2, 3, 3), "bias": True, "stride": 1, "padding": 1},
    "stride2_no_bias": {"x": (1, 3, 5, 5), "weight": (2, 3, 2, 3), "bias": False, "stride": 2, "padding": 0},
    "rect_stride_pad": {"x": (2, 1, 5, 4), "weight": (2, 1, 3, 2), "bias": True, "stride": (2, 1), "padding": (1, 0)},
}
KERNELS = {"naive": ("conv2d_naive_forward", "conv2d_naive_backward"), "im2col": ("conv2d_forward", "conv2d_backward")}
INPUTS = ("x", "weight", "bias")
GRADS = ("dx", "dweight", "dbias")


def _draw(spec, rng) -> dict:
    ref = {"x": rng.uniform(-1, 1, spec["x"]), "weight": rng.uniform(-1, 1, spec["weight"])}
    if spec["bias"]:
        ref["bias"] = rng.uniform(-1, 1, spec["weight"][0])
    return ref


def _args(ref, spec) -> dict:
    return {"x": ref["x"], "weight": ref["weight"], "bias": ref.get("bias"), "stride": spec["stride"],
            "padding": spec["padding"]}


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's results for every case (run by the instructor).
    Both kernels compute the same function, so one set of results serves both."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        ref = _draw(spec, rng)
        out, cache = F.conv2d_naive_forward(**_args(ref, spec))
        ref["dout"] = rng.standard_normal(out.shape)
        ref["out"] = out
        ref.update({name: g for name, g in zip(GRADS, F.conv2d_naive_backward(ref["dout"], cache)) if g is not None})
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


PARAMS = [(kernel, case) for kernel in KERNELS for case in CASES]


@pytest.mark.parametrize("kernel,case", PARAMS)
def test_conv_forward(F, grader, kernel, case):
    forward = KERNELS[kernel][0]
    ref = grader.reference(case)
    out, _ = getattr(F, forward)(**_args(ref, CASES[case]))
    grader.compare(forward, case, {"out": out}, {"out": ref["out"]})


def _backward(F, grader, kernel, ref, args):
    forward, backward = KERNELS[kernel]
    _, cache = getattr(F, forward)(**args)
    return grader.unpack(backward, getattr(F, backward)(ref["dout"].copy(), cache), GRADS)


@pytest.mark.parametrize("kernel,case", PARAMS)
def test_conv_backward_gradcheck(F, grader, kernel, case):
    forward, backward = KERNELS[kernel]
    ref = grader.reference(case)
    args = _args(ref, CASES[case])
    grads = _backward(F, grader, kernel, ref, args)
    pairs = [(g, grads[g], args[i]) for g, i in zip(GRADS, INPUTS) if args[i] is not None]
    grader.gradcheck(backward, case, lambda: getattr(F, forward)(**args)[0], ref["dout"], pairs)


@pytest.mark.parametrize("kernel,case", PARAMS)
def test_conv_backward_reference(F, grader, kernel, case):
    ref = grader.reference(case)
    grads = _backward(F, grader, kernel, ref, _args(ref, CASES[case]))
    grader.compare(KERNELS[kernel][1], case, grads, {g: ref.get(g) for g in GRADS})
