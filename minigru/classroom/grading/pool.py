"""Grading tests of exercise `pool`: maxpool2d_backward (docs/derivations.md eq. P2).

x: (N, C, H, W); dout and the pooled output: (N, C, Ho, Wo); dx: (N, C, H, W).
The forward pass is the library's (not part of the exercise).
"""
import numpy as np
import pytest

EXERCISE = "pool"
CASES = {
    "2x2_stride2": {"x": (2, 2, 4, 4), "kernel_size": 2, "stride": None, "padding": 0},
    "3x3_stride1_pad1": {"x": (1, 2, 4, 5), "kernel_size": 3, "stride": 1, "padding": 1},
    "3x2_stride2": {"x": (2, 1, 5, 5), "kernel_size": (3, 2), "stride": 2, "padding": 0},
}


def _args(ref, spec) -> dict:
    return {"x": ref["x"], "kernel_size": spec["kernel_size"], "stride": spec["stride"], "padding": spec["padding"]}


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's dx for every case (run by the instructor)."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        # a permutation keeps every value distinct, so no window has a tie and finite differences are exact
        ref = {"x": rng.permutation(np.prod(spec["x"])).reshape(spec["x"]) / 10.0}
        out, cache = F.maxpool2d_forward(**_args(ref, spec))
        ref["dout"] = rng.standard_normal(out.shape)
        ref["dx"] = F.maxpool2d_backward(ref["dout"], cache)
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


@pytest.mark.parametrize("case", CASES)
def test_maxpool2d_backward_gradcheck(F, grader, case):
    ref = grader.reference(case)
    args = _args(ref, CASES[case])
    _, cache = F.maxpool2d_forward(**args)
    dx = F.maxpool2d_backward(ref["dout"].copy(), cache)
    grader.gradcheck("maxpool2d_backward", case, lambda: F.maxpool2d_forward(**args)[0], ref["dout"],
                     [("dx", dx, args["x"])])


@pytest.mark.parametrize("case", CASES)
def test_maxpool2d_backward_reference(F, grader, case):
    ref = grader.reference(case)
    _, cache = F.maxpool2d_forward(**_args(ref, CASES[case]))
    dx = F.maxpool2d_backward(ref["dout"].copy(), cache)
    grader.compare("maxpool2d_backward", case, {"dx": dx}, {"dx": ref["dx"]})
