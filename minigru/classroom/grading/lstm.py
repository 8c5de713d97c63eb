"""Grading tests of exercise `lstm`: lstm_step_forward and lstm_step_backward (docs/derivations.md eqs. M1-M8).

x: (N, I), h_prev and c_prev: (N, H), weight_ih: (4H, I), weight_hh: (4H, H), biases (4H,) or None.
"""
import numpy as np
import pytest

EXERCISE = "lstm"
CASES = {
    "bias": {"N": 2, "I": 3, "H": 2, "bias": True},
    "no_bias": {"N": 3, "I": 2, "H": 3, "bias": False},
}
INPUTS = ("x", "h_prev", "c_prev", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
GRADS = ("dx", "dh_prev", "dc_prev", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")


def _draw(spec, rng) -> dict:
    n, i, h = spec["N"], spec["I"], spec["H"]
    shapes = {"x": (n, i), "h_prev": (n, h), "c_prev": (n, h), "weight_ih": (4 * h, i), "weight_hh": (4 * h, h),
              "bias_ih": (4 * h,), "bias_hh": (4 * h,)}
    if not spec["bias"]:
        del shapes["bias_ih"], shapes["bias_hh"]
    return {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}


def _args(ref) -> dict:
    return {name: ref.get(name) for name in INPUTS}


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's results for every case (run by the instructor)."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        ref = _draw(spec, rng)
        (h_next, c_next), cache = F.lstm_step_forward(**_args(ref))
        ref["dh_next"] = rng.standard_normal(h_next.shape)
        ref["dc_next"] = rng.standard_normal(c_next.shape)
        grads = F.lstm_step_backward(ref["dh_next"], ref["dc_next"], cache)
        ref["h_next"], ref["c_next"] = h_next, c_next
        ref.update({name: g for name, g in zip(GRADS, grads) if g is not None})
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


def _outputs(returned):
    """(h_next, c_next) from lstm_step_forward's ((h_next, c_next), cache), with a clear error otherwise."""
    if not (isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[0], tuple)
            and len(returned[0]) == 2):
        pytest.fail("lstm_step_forward must return ((h_next, c_next), cache)", pytrace=False)
    return returned[0]


@pytest.mark.parametrize("case", CASES)
def test_lstm_step_forward(F, grader, case):
    ref = grader.reference(case)
    h_next, c_next = _outputs(F.lstm_step_forward(**_args(ref)))
    grader.compare("lstm_step_forward", case, {"h_next": h_next, "c_next": c_next},
                   {"h_next": ref["h_next"], "c_next": ref["c_next"]})


def _backward(F, grader, ref, args):
    _, cache = F.lstm_step_forward(**args)
    returned = F.lstm_step_backward(ref["dh_next"].copy(), ref["dc_next"].copy(), cache)
    return grader.unpack("lstm_step_backward", returned, GRADS)


@pytest.mark.parametrize("case", CASES)
def test_lstm_step_backward_gradcheck(F, grader, case):
    ref = grader.reference(case)
    args = _args(ref)
    grads = _backward(F, grader, ref, args)
    pairs = [(g, grads[g], args[i]) for g, i in zip(GRADS, INPUTS) if args[i] is not None]
    grader.gradcheck("lstm_step_backward", case, lambda: _outputs(F.lstm_step_forward(**args)),
                     [ref["dh_next"], ref["dc_next"]], pairs)


@pytest.mark.parametrize("case", CASES)
def test_lstm_step_backward_reference(F, grader, case):
    ref = grader.reference(case)
    grads = _backward(F, grader, ref, _args(ref))
    grader.compare("lstm_step_backward", case, grads, {g: ref.get(g) for g in GRADS})
