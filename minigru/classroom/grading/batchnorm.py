"""Grading tests of exercise `batchnorm`: batchnorm_backward with batch statistics
(docs/derivations.md eqs. B8-B11).

x and dout: (N, C, *), gamma and beta: (C,) or None; dx: the shape of x, dgamma and dbeta: (C,).
The forward pass is the library's (not part of the exercise).
"""
import numpy as np
import pytest

EXERCISE = "batchnorm"
CASES = {
    "2d": {"x": (4, 3), "affine": True},
    "4d": {"x": (2, 2, 2, 3), "affine": True},
    "3d_no_affine": {"x": (3, 2, 4), "affine": False},
}
INPUTS = ("x", "gamma", "beta")
GRADS = ("dx", "dgamma", "dbeta")


def _args(ref) -> dict:
    return {"x": ref["x"], "gamma": ref.get("gamma"), "beta": ref.get("beta"), "training": True}


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's results for every case (run by the instructor)."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        channels = spec["x"][1]
        ref = {"x": rng.normal(0.5, 2.0, spec["x"])}
        if spec["affine"]:
            ref["gamma"] = rng.uniform(0.5, 1.5, channels)
            ref["beta"] = rng.uniform(-1, 1, channels)
        out, cache = F.batchnorm_forward(**_args(ref))
        ref["dout"] = rng.standard_normal(out.shape)
        ref.update({name: g for name, g in zip(GRADS, F.batchnorm_backward(ref["dout"], cache)) if g is not None})
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


def _backward(F, grader, ref, args):
    _, cache = F.batchnorm_forward(**args)
    return grader.unpack("batchnorm_backward", F.batchnorm_backward(ref["dout"].copy(), cache), GRADS)


@pytest.mark.parametrize("case", CASES)
def test_batchnorm_backward_gradcheck(F, grader, case):
    ref = grader.reference(case)
    args = _args(ref)
    grads = _backward(F, grader, ref, args)
    pairs = [(g, grads[g], args[i]) for g, i in zip(GRADS, INPUTS) if args[i] is not None]
    grader.gradcheck("batchnorm_backward", case, lambda: F.batchnorm_forward(**args)[0], ref["dout"], pairs)


@pytest.mark.parametrize("case", CASES)
def test_batchnorm_backward_reference(F, grader, case):
    ref = grader.reference(case)
    grads = _backward(F, grader, ref, _args(ref))
    grader.compare("batchnorm_backward", case, grads, {g: ref.get(g) for g in GRADS})
