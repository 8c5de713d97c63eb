"""Grading tests of exercise `gru`: gru_step_forward and gru_step_backward (docs/derivations.md eqs. G3-G14).

x: (N, I), h_prev: (N, H), weight_ih: (3H, I), weight_hh: (3H, H), biases (3H,) or None.
"""
import numpy as np
import pytest

EXERCISE = "gru"
CASES = {
    "reset_after": {"N": 2, "I": 3, "H": 2, "reset_after": True, "bias": True},
    "reset_before": {"N": 3, "I": 2, "H": 3, "reset_after": False, "bias": True},
    "no_bias": {"N": 1, "I": 2, "H": 2, "reset_after": True, "bias": False},
}
INPUTS = ("x", "h_prev", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
GRADS = ("dx", "dh_prev", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")


def _draw(spec, rng) -> dict:
    n, i, h = spec["N"], spec["I"], spec["H"]
    shapes = {"x": (n, i), "h_prev": (n, h), "weight_ih": (3 * h, i), "weight_hh": (3 * h, h),
              "bias_ih": (3 * h,), "bias_hh": (3 * h,)}
    if not spec["bias"]:
        del shapes["bias_ih"], shapes["bias_hh"]
    return {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}


def _args(ref, spec) -> dict:
    args = {name: ref.get(name) for name in INPUTS}
    args["reset_after"] = spec["reset_after"]
    return args


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's results for every case (run by the instructor)."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        ref = _draw(spec, rng)
        h_next, cache = F.gru_step_forward(**_args(ref, spec))
        ref["dh_next"] = rng.standard_normal(h_next.shape)
        grads = F.gru_step_backward(ref["dh_next"], cache)
        ref["h_next"] = h_next
        ref.update({name: g for name, g in zip(GRADS, grads) if g is not None})
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


@pytest.mark.parametrize("case", CASES)
def test_gru_step_forward(F, grader, case):
    ref = grader.reference(case)
    h_next, _ = F.gru_step_forward(**_args(ref, CASES[case]))
    grader.compare("gru_step_forward", case, {"h_next": h_next}, {"h_next": ref["h_next"]})


@pytest.mark.parametrize("case", CASES)
def test_gru_step_backward_gradcheck(F, grader, case):
    ref = grader.reference(case)
    args = _args(ref, CASES[case])
    _, cache = F.gru_step_forward(**args)
    grads = grader.unpack("gru_step_backward", F.gru_step_backward(ref["dh_next"].copy(), cache), GRADS)
    pairs = [(g, grads[g], args[i]) for g, i in zip(GRADS, INPUTS) if args[i] is not None]
    grader.gradcheck("gru_step_backward", case, lambda: F.gru_step_forward(**args)[0], ref["dh_next"], pairs)


@pytest.mark.parametrize("case", CASES)
def test_gru_step_backward_reference(F, grader, case):
    ref = grader.reference(case)
    _, cache = F.gru_step_forward(**_args(ref, CASES[case]))
    grads = grader.unpack("gru_step_backward", F.gru_step_backward(ref["dh_next"].copy(), cache), GRADS)
    grader.compare("gru_step_backward", case, grads, {g: ref.get(g) for g in GRADS})
