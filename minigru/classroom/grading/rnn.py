"""Grading tests of exercise `rnn`: rnn_step_forward and rnn_step_backward (docs/derivations.md eqs. R1-R4).

x: (N, I), h_prev: (N, H), weight_ih: (H, I), weight_hh: (H, H), biases (H,).
"""
import numpy as np
import pytest

EXERCISE = "rnn"
CASES = {
    "tanh": {"N": 2, "I": 3, "H": 4, "nonlinearity": "tanh"},
    "relu": {"N": 3, "I": 2, "H": 3, "nonlinearity": "relu"},
}
INPUTS = ("x", "h_prev", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
GRADS = ("dx", "dh_prev", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh")


def _draw(spec, rng) -> dict:
    n, i, h = spec["N"], spec["I"], spec["H"]
    shapes = {"x": (n, i), "h_prev": (n, h), "weight_ih": (h, i), "weight_hh": (h, h), "bias_ih": (h,), "bias_hh": (h,)}
    return {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}


def _args(ref, spec) -> dict:
    return {**{name: ref[name] for name in INPUTS}, "nonlinearity": spec["nonlinearity"]}


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's results for every case (run by the instructor)."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        ref = _draw(spec, rng)
        h_next, cache = F.rnn_step_forward(**_args(ref, spec))
        ref["dh_next"] = rng.standard_normal(h_next.shape)
        ref["h_next"] = h_next
        ref.update(zip(GRADS, F.rnn_step_backward(ref["dh_next"], cache)))
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


@pytest.mark.parametrize("case", CASES)
def test_rnn_step_forward(F, grader, case):
    ref = grader.reference(case)
    h_next, _ = F.rnn_step_forward(**_args(ref, CASES[case]))
    grader.compare("rnn_step_forward", case, {"h_next": h_next}, {"h_next": ref["h_next"]})


@pytest.mark.parametrize("case", CASES)
def test_rnn_step_backward_gradcheck(F, grader, case):
    ref = grader.reference(case)
    args = _args(ref, CASES[case])
    _, cache = F.rnn_step_forward(**args)
    grads = grader.unpack("rnn_step_backward", F.rnn_step_backward(ref["dh_next"].copy(), cache), GRADS)
    pairs = [(g, grads[g], args[i]) for g, i in zip(GRADS, INPUTS)]
    grader.gradcheck("rnn_step_backward", case, lambda: F.rnn_step_forward(**args)[0], ref["dh_next"], pairs)


@pytest.mark.parametrize("case", CASES)
def test_rnn_step_backward_reference(F, grader, case):
    ref = grader.reference(case)
    _, cache = F.rnn_step_forward(**_args(ref, CASES[case]))
    grads = grader.unpack("rnn_step_backward", F.rnn_step_backward(ref["dh_next"].copy(), cache), GRADS)
    grader.compare("rnn_step_backward", case, grads, {g: ref[g] for g in GRADS})
