"""benchmarks/bench_vs_torch.py's train-step cases: the torch twin of every step model computes what minigru
computes (outputs, every parameter gradient, one optimizer update), so that the benchmark times the same work."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _frameworks  # noqa: E402
import bench_vs_torch  # noqa: E402


@pytest.mark.parametrize("model", list(_frameworks.STEP_MODELS))
@pytest.mark.parametrize("optimizer", list(_frameworks.OPTIMIZERS))
def test_step_twins_agree_on_outputs_gradients_and_update(model, optimizer):
    pytest.importorskip("torch")
    params = {"model": model, "B": 4, "optimizer": optimizer}
    mine, theirs = _frameworks.make_runner("minigru"), _frameworks.make_runner("torch", threads=1)
    mine.setup("k", "step", params)
    theirs.setup("k", "step", params)
    got, ref = mine.outputs("k"), theirs.outputs("k")
    err, where = bench_vs_torch.compare_outputs(got, ref)      # also raises if the array names differ
    assert err < 1e-4, (err, where)
    names = set(got)
    assert {"logits", "loss"} <= names
    assert "grad.features.0.weight" in names                          # the convolutions' weights are compared ...
    assert model == "seed" or "grad.gru.weight_hh_l0" in names         # ... and the GRU's
    # ... and for SGD one update of the parameters (the two optimizers' settings)
    assert any(n.startswith("update.") for n in names) == (optimizer == "sgd")
    assert not any("whiten" in n for n in names)     # the frozen whitening has no gradient in either framework


def test_step_labels_and_targets():
    args = bench_vs_torch.parse_args(["--parts", "step"])
    assert args.optimizer == "sgd"
    steps = bench_vs_torch.cases(args)
    assert [c[3]["model"] for c in steps] == ["seed", "cnngru", "cnn-gru-fast"]
    label = bench_vs_torch.case_label({"kind": "step", "params": steps[-1][3]})
    assert label == "train step cnn-gru-fast B64 (fwd+bwd+SGD-nesterov)"
    assert bench_vs_torch.TARGETS == {"gru": 0.8, "step": 1.0, "memory": 1.5}


def test_replicas_time_a_split_step_and_verify_the_whole_batch():
    """--replicas 2: the timed step runs on nn.DataParallel (the module's weights move), while the outputs
    verified against torch stay those of the model on the whole batch."""
    import numpy as np
    params = {"model": "cnngru", "B": 4, "optimizer": "sgd"}
    split, alone = _frameworks.make_runner("minigru", replicas=2), _frameworks.make_runner("minigru")
    split.blas_limit.restore_original_limits()       # the runner limits this process's BLAS threads for good
    for runner in (split, alone):
        runner.setup("k", "step", params)
    got, ref = split.outputs("k"), alone.outputs("k")
    assert got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k]) for k in ref)
    assert len(split.run("k", 1)) == 1
    with pytest.raises(SystemExit):
        bench_vs_torch.parse_args(["--replicas", "0"])


@pytest.mark.parametrize("model", list(_frameworks.STEP_MODELS))
def test_step_profile_finds_every_kind_of_layer_in_both_frameworks(model):
    """benchmarks/step_profile.py attributes time to a kind of layer by minigru's leaf classes and torch's
    profiler event names: each kind that the model has must get time in both (a renamed torch event would
    otherwise show as 0 ms, silently), and none that it lacks."""
    pytest.importorskip("torch")
    import step_profile  # noqa: PLC0415
    params = {"model": model, "B": 4, "optimizer": "sgd"}
    mine, theirs = _frameworks.make_runner("minigru"), _frameworks.make_runner("torch", threads=1)
    for runner in (mine, theirs):
        runner.setup("k", "step", params)
        runner.cases["k"][0]()                         # a first step outside the profile, as the worker does
    ours = step_profile.minigru_kinds(mine.models["k"], mine.cases["k"][0], 1)
    torch_times = step_profile.torch_kinds(theirs.torch, theirs.cases["k"][0], 1)
    present = {"convolutions", "max-pooling"} | ({"batch norm"} if model == "cnn-gru-fast" else set())
    assert {k for k, ms in ours.items() if ms > 0} == present
    assert {k for k, ms in torch_times.items() if ms > 0} == present
    rows = [{"model": model, "framework": "minigru", "step_ms": 10.0, **ours},
            {"model": model, "framework": "torch", "step_ms": 20.0, **torch_times}]
    text = step_profile.table(rows, replicas=2, threads=1)
    rest = 10.0 - sum(ours.values())
    assert f"| everything else | {rest:.2f} |" in text
    assert "| **the whole step** (median) | 10.00 | 20.00 | 0.50 |" in text
