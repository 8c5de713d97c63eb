"""Grading tests of exercise `softmax`: cross_entropy_forward and cross_entropy_backward
(docs/derivations.md eqs. S1-S8).

logits: (N, C), targets: (N,) integers, weight: (C,) or None; the loss is 0-d ("mean", "sum")
or (N,) ("none"); dlogits: (N, C).
"""
import numpy as np
import pytest

EXERCISE = "softmax"
CASES = {
    "mean": {"N": 3, "C": 4, "weight": False, "reduction": "mean", "label_smoothing": 0.0},
    "sum_weighted": {"N": 4, "C": 3, "weight": True, "reduction": "sum", "label_smoothing": 0.0},
    "none_smoothing": {"N": 3, "C": 5, "weight": False, "reduction": "none", "label_smoothing": 0.2},
    "mean_weighted_smoothing": {"N": 5, "C": 3, "weight": True, "reduction": "mean", "label_smoothing": 0.1},
}


def _args(ref, spec) -> dict:
    return {"logits": ref["logits"], "targets": ref["targets"], "weight": ref.get("weight"),
            "reduction": spec["reduction"], "label_smoothing": spec["label_smoothing"]}


def make_reference(F, seed=0) -> dict:
    """Inputs, upstream gradients and the solution's results for every case (run by the instructor)."""
    rng = np.random.default_rng(seed)
    data = {}
    for case, spec in CASES.items():
        ref = {"logits": rng.normal(0, 2, (spec["N"], spec["C"])),
               "targets": rng.integers(0, spec["C"], spec["N"]).astype(np.int64)}
        if spec["weight"]:
            ref["weight"] = rng.uniform(0.5, 2.0, spec["C"])
        loss, cache = F.cross_entropy_forward(**_args(ref, spec))
        ref["dout"] = np.asarray(rng.standard_normal(np.shape(loss)))
        ref["loss"] = loss
        ref["dlogits"] = F.cross_entropy_backward(ref["dout"], cache)
        data.update({f"{case}.{name}": np.asarray(value) for name, value in ref.items()})
    return data


@pytest.mark.parametrize("case", CASES)
def test_cross_entropy_forward(F, grader, case):
    ref = grader.reference(case)
    loss, _ = F.cross_entropy_forward(**_args(ref, CASES[case]))
    grader.compare("cross_entropy_forward", case, {"loss": loss}, {"loss": ref["loss"]})


@pytest.mark.parametrize("case", CASES)
def test_cross_entropy_backward_gradcheck(F, grader, case):
    ref = grader.reference(case)
    args = _args(ref, CASES[case])
    _, cache = F.cross_entropy_forward(**args)
    dlogits = F.cross_entropy_backward(ref["dout"].copy(), cache)
    grader.gradcheck("cross_entropy_backward", case, lambda: F.cross_entropy_forward(**args)[0], ref["dout"],
                     [("dlogits", dlogits, args["logits"])])


@pytest.mark.parametrize("case", CASES)
def test_cross_entropy_backward_reference(F, grader, case):
    ref = grader.reference(case)
    _, cache = F.cross_entropy_forward(**_args(ref, CASES[case]))
    dlogits = F.cross_entropy_backward(ref["dout"].copy(), cache)
    grader.compare("cross_entropy_backward", case, {"dlogits": dlogits}, {"dlogits": ref["dlogits"]})
