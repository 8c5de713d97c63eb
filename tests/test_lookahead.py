"""Lookahead (eq. O11): every k steps the slow copy moves towards the weights and the weights jump to it, for
parameters and batch-norm buffers, against a plain loop written from the equation; airbench's decay schedule,
the optimizer hook, finish(), state round trips, errors, and the CLI's --lookahead (final weights, exact resume)."""
import json
import re

import numpy as np
import pytest

from minigru import backend, cli, nn, optim
from minigru.optim.lookahead import airbench_decay
from minigru.train import read_checkpoint


def small_model(rng=0, dtype=np.float64):
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype),
                         nn.ReLU())


def float_entries(model):
    return {k: backend.to_numpy(v).copy() for k, v in model.state_dict().items() if np.dtype(v.dtype).kind == "f"}


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("schedule", ["constant", "airbench"])
def test_pull_back_follows_the_equation(xp, k, schedule):
    """Any sequence of weights (random ones, as an optimizer might leave them): a plain loop over eq. O11."""
    total, rng = 13, np.random.default_rng(k)
    decay = 0.6 if schedule == "constant" else airbench_decay(total, k)
    model = small_model()                               # on the backend under test
    lookahead = optim.Lookahead(model, k=k, decay=decay)
    slow = float_entries(model)                          # the reference: dicts of float64 NumPy arrays
    for step in range(1, total + 1):
        weights = {name: rng.standard_normal(v.shape) for name, v in slow.items()}
        model.load_state_dict(weights, strict=False)      # what the optimizer step left
        lookahead.step()
        if step % k == 0:
            d = decay if schedule == "constant" else 0.95 ** k * (step / total) ** 3
            slow = {name: d * slow[name] + (1 - d) * weights[name] for name in slow}
            weights = slow
        got = float_entries(model)
        for name in slow:
            np.testing.assert_allclose(got[name], weights[name], rtol=1e-12, atol=1e-14, err_msg=(step, name))
    lookahead.finish()
    got = float_entries(model)
    for name in slow:                                     # finish: the model takes the slow weights
        np.testing.assert_allclose(got[name], slow[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_decay_zero_changes_nothing_and_one_holds_the_start():
    model = small_model()
    start = float_entries(model)
    for decay, expect_start in ((0.0, False), (1.0, True)):
        model.load_state_dict(start, strict=False)
        lookahead = optim.Lookahead(model, k=2, decay=decay)
        moved = {name: v + 1.0 for name, v in start.items()}
        model.load_state_dict(moved, strict=False)
        lookahead.step()                                  # step 1: no pull-back yet
        lookahead.step()                                  # step 2: pull back
        got = float_entries(model)
        for name in start:
            np.testing.assert_array_equal(got[name], start[name] if expect_start else moved[name])


def test_airbench_schedule():
    decay = airbench_decay(100, k=5)
    assert decay(0) == 0.0 and decay(100) == pytest.approx(0.95 ** 5) and decay(50) == pytest.approx(0.95 ** 5 / 8)
    assert decay(200) == pytest.approx(0.95 ** 5)         # past the end (an extended run): held at the top
    with pytest.raises(ValueError, match="total_steps must be positive"):
        airbench_decay(0)


def test_attached_to_an_optimizer_it_counts_steps_and_pulls_back():
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    lookahead = optim.Lookahead(model, k=3, decay=1.0).attach(opt)
    start = float_entries(model)
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    opt.step()
    assert lookahead.steps == 2
    assert not np.array_equal(float_entries(model)["0.weight"], start["0.weight"])      # SGD moved it
    opt.step()                                            # third step: decay 1 pulls all the way back
    np.testing.assert_array_equal(float_entries(model)["0.weight"], start["0.weight"])
    lookahead.detach()
    opt.step()
    assert lookahead.steps == 3


def test_state_round_trip_and_errors():
    model = small_model()
    a = optim.Lookahead(model, k=2, decay=0.5)
    model.load_state_dict({k: v + 1 for k, v in float_entries(model).items()}, strict=False)
    a.step()
    a.step()
    state = a.state_dict()
    b = optim.Lookahead(small_model(rng=1), k=4, decay=0.5)
    b.load_state_dict(state)
    assert b.k == 2 and b.steps == 2
    for name, value in a.slow.items():
        np.testing.assert_array_equal(backend.to_numpy(b.slow[name]), backend.to_numpy(value))
    with pytest.raises(KeyError, match="slow weights"):
        optim.Lookahead(nn.Linear(2, 2, rng=0)).load_state_dict(state)
    name = next(iter(state["slow"]))
    cut = {**state, "slow": {**state["slow"], name: state["slow"][name][:1]}}
    with pytest.raises(ValueError, match=rf"saved slow weights of '{re.escape(name)}': shape \(1,"):
        optim.Lookahead(small_model(rng=1)).load_state_dict(cut)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        optim.Lookahead(model, k=0)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        optim.Lookahead(model, decay=1.5)
    bad = optim.Lookahead(model, k=1, decay=lambda step: 2.0)
    with pytest.raises(ValueError, match="outside"):
        bad.step()
    with pytest.raises(TypeError, match="minigru Module"):
        optim.Lookahead(object())


# ---------------------------------------------------------------- the command line
TINY = ["--model", "cnn-gru-fast", "--dataset", "synthetic-shapes", "--limit-train", "96", "--limit-test", "20",
        "--batch-size", "16", "--no-progress", "--model-arg", "image_size=16", "--model-arg", "widths=[4,6]",
        "--model-arg", "convs_per_block=1", "--model-arg", "hidden_size=5", "--lookahead"]


def test_cli_run_ends_on_the_slow_weights(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    saved = read_checkpoint(out / "checkpoint.npz")
    state = saved["extra"]["lookahead"]
    assert state["k"] == 5 and state["steps"] == 2 * (96 // 16)
    for name, slow in state["slow"].items():              # the final checkpoint holds the slow weights
        np.testing.assert_allclose(saved["model"][name], slow.astype(saved["model"][name].dtype), rtol=1e-6,
                                   err_msg=name)
    assert json.loads((out / "config.json").read_text())["lookahead"] is True


def test_cli_resume_with_lookahead_continues_exactly(tmp_path, interrupted_after_epoch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli.main(["train", *TINY, "--epochs", "3", "--out", str(straight)]) == 0
    with interrupted_after_epoch(2):
        assert cli.main(["train", *TINY, "--epochs", "3", "--out", str(resumed)]) == 130
    assert cli.main(["train", "--out", str(resumed), "--resume", "--no-progress"]) == 0
    a, b = read_checkpoint(straight / "checkpoint.npz"), read_checkpoint(resumed / "checkpoint.npz")
    for key in a["model"]:
        assert np.array_equal(a["model"][key], b["model"][key]), key
    assert a["extra"]["lookahead"]["steps"] == b["extra"]["lookahead"]["steps"]
