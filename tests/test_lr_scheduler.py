"""Learning-rate schedules: the LR (and momentum) sequence step by step against torch, resume, errors."""
import json
import math
import warnings

import numpy as np
import pytest

from minigru import optim
from minigru.nn import Parameter
from minigru.optim import lr_scheduler as sch

LRS = (0.1, 0.03)  # two parameter groups with different rates


def make_opt(kind="SGD", **kwargs):
    groups = [{"params": [Parameter(np.zeros(2))], "lr": LRS[0]},
              {"params": [Parameter(np.zeros(3))], "lr": LRS[1]}]
    if kind == "SGD":
        return optim.SGD(groups, lr=LRS[0], **kwargs)
    return getattr(optim, kind)(groups, lr=LRS[0], **kwargs)


def make_torch_opt(kind="SGD", **kwargs):
    torch = pytest.importorskip("torch")
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": LRS[0]},
              {"params": [torch.zeros(3, requires_grad=True)], "lr": LRS[1]}]
    return getattr(torch.optim, kind)(groups, lr=LRS[0], **kwargs)


def momentum_of(group):
    return group["betas"][0] if "betas" in group else group.get("momentum")


def sequence(opt, sched, steps):
    """(lr of each group, momentum of each group) at step 0 and after each of ``steps`` steps."""
    out = [([g["lr"] for g in opt.param_groups], [momentum_of(g) for g in opt.param_groups])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes about stepping order
        for _ in range(steps):
            opt.step()  # parameters have zero (minigru) or no (torch) gradients: only the schedule matters
            sched.step()
            out.append(([g["lr"] for g in opt.param_groups], [momentum_of(g) for g in opt.param_groups]))
    return out


def assert_sequences_close(ours, theirs):
    assert len(ours) == len(theirs)
    for t, ((lr_a, mom_a), (lr_b, mom_b)) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(lr_a, lr_b, rtol=1e-12, atol=1e-18, err_msg=f"lr at step {t}")
        if mom_b[0] is not None:
            np.testing.assert_allclose(mom_a, mom_b, rtol=1e-12, atol=0, err_msg=f"momentum at step {t}")


CASES = [
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e)), 12),
    ("LambdaLR", dict(lr_lambda=[lambda e: 0.9 ** e, lambda e: 1 + e % 3]), 12),
    ("StepLR", dict(step_size=3), 14),
    ("StepLR", dict(step_size=2, gamma=0.5), 14),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3), 14),
    ("ExponentialLR", dict(gamma=0.9), 14),
    ("LinearLR", dict(), 10),
    ("LinearLR", dict(start_factor=0.1, end_factor=0.8, total_iters=4), 10),
    ("CosineAnnealingLR", dict(T_max=10), 25),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001), 20),
]


@pytest.mark.parametrize("name, kwargs, steps", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_epoch_schedules_match_torch(name, kwargs, steps):
    torch = pytest.importorskip("torch")
    opt = make_opt(momentum=0.9)
    tor = make_torch_opt(momentum=0.9)
    ours = sequence(opt, getattr(sch, name)(opt, **kwargs), steps)
    theirs = sequence(tor, getattr(torch.optim.lr_scheduler, name)(tor, **kwargs), steps)
    assert_sequences_close(ours, theirs)
    assert len({tuple(lr) for lr, _ in ours}) > 1  # the schedule does change the rate


ONE_CYCLE = [
    ("SGD", dict(momentum=0.9), dict(max_lr=0.5, total_steps=20)),
    ("SGD", dict(momentum=0.9, nesterov=True), dict(max_lr=[0.5, 0.2], total_steps=25, three_phase=True)),
    ("SGD", dict(), dict(max_lr=0.5, epochs=3, steps_per_epoch=7, pct_start=0.4, div_factor=10.0,
                         final_div_factor=100.0)),
    ("SGD", dict(momentum=0.9), dict(max_lr=0.5, total_steps=16, anneal_strategy="linear", three_phase=True)),
    ("SGD", dict(momentum=0.9), dict(max_lr=0.5, total_steps=16, cycle_momentum=False)),
    # warm-up then linear decay at constant momentum (`minigru train --schedule linear`)
    ("SGD", dict(momentum=0.9, nesterov=True), dict(max_lr=0.2, total_steps=30, pct_start=0.2, anneal_strategy="linear",
                                                    cycle_momentum=False, div_factor=10.0, final_div_factor=1e4)),
    ("Adam", dict(), dict(max_lr=0.01, total_steps=30)),
    ("AdamW", dict(betas=(0.9, 0.99)), dict(max_lr=0.01, total_steps=30, three_phase=True, base_momentum=0.8,
                                           max_momentum=[0.95, 0.9])),
]


@pytest.mark.parametrize("kind, opt_kwargs, kwargs", ONE_CYCLE, ids=[f"{c[0]}-{i}" for i, c in enumerate(ONE_CYCLE)])
def test_one_cycle_matches_torch(kind, opt_kwargs, kwargs):
    torch = pytest.importorskip("torch")
    opt = make_opt(kind, **opt_kwargs)
    tor = make_torch_opt(kind, **opt_kwargs)
    ours_sched = sch.OneCycleLR(opt, **kwargs)
    torch_sched = torch.optim.lr_scheduler.OneCycleLR(tor, **kwargs)
    total = ours_sched.total_steps
    assert_sequences_close(sequence(opt, ours_sched, total), sequence(tor, torch_sched, total))
    with pytest.raises(ValueError, match="total_steps"):
        ours_sched.step()  # one step too many


def test_one_cycle_hand_values():
    opt = make_opt(momentum=0.9)
    sched = sch.OneCycleLR(opt, max_lr=1.0, total_steps=11, pct_start=0.5, div_factor=4.0, final_div_factor=2.0)
    lrs = [g[0][0] for g in sequence(opt, sched, 10)]
    # rises 0.25 -> 1.0 over steps 0..4.5 (cosine), falls to 0.125 at step 10
    assert lrs[0] == pytest.approx(0.25, rel=1e-15)
    assert lrs[10] == pytest.approx(0.125, rel=1e-15)
    assert lrs[2] == pytest.approx(1.0 + (0.25 - 1.0) / 2 * (math.cos(math.pi * 2 / 4.5) + 1), rel=1e-14)
    assert max(lrs) <= 1.0


def test_sequential_warmup_then_cosine_matches_torch():
    torch = pytest.importorskip("torch")
    tl = torch.optim.lr_scheduler

    def build(mod, opt):
        warm = mod.LinearLR(opt, start_factor=0.1, total_iters=4)
        cos = mod.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4)
        return mod.SequentialLR(opt, [warm, cos], milestones=[4])

    opt, tor = make_opt(momentum=0.9), make_torch_opt(momentum=0.9)
    assert_sequences_close(sequence(opt, build(sch, opt), 16), sequence(tor, build(tl, tor), 16))


def _json_round_trip(state):
    # as a checkpoint does: tuples become lists, int keys strings
    return json.loads(json.dumps(state, default=lambda a: a.tolist()))


RESUME = [
    ("SGD", dict(momentum=0.9), lambda o: sch.OneCycleLR(o, max_lr=0.5, total_steps=20, three_phase=True)),
    ("Adam", dict(), lambda o: sch.OneCycleLR(o, max_lr=0.01, total_steps=20)),
    ("SGD", dict(momentum=0.9), lambda o: sch.MultiStepLR(o, milestones=[3, 8], gamma=0.5)),
    ("SGD", dict(momentum=0.9), lambda o: sch.CosineAnnealingLR(o, T_max=12)),
    ("SGD", dict(momentum=0.9), lambda o: sch.LambdaLR(o, lambda e: 0.95 ** e)),
    ("SGD", dict(momentum=0.9), lambda o: sch.SequentialLR(
        o, [sch.LinearLR(o, start_factor=0.2, total_iters=3), sch.StepLR(o, step_size=4)], milestones=[3])),
]


@pytest.mark.parametrize("kind, opt_kwargs, build", RESUME, ids=[f"resume-{i}" for i in range(len(RESUME))])
def test_state_dict_resume_gives_the_same_sequence(kind, opt_kwargs, build):
    opt = make_opt(kind, **opt_kwargs)
    straight = sequence(opt, build(opt), 15)

    opt = make_opt(kind, **opt_kwargs)
    sched = build(opt)
    first = sequence(opt, sched, 6)
    opt_state, sched_state = _json_round_trip(opt.state_dict()), _json_round_trip(sched.state_dict())

    fresh = make_opt(kind, **opt_kwargs)
    fresh_sched = build(fresh)          # as in torch: build the scheduler, then load both states
    fresh.load_state_dict(opt_state)
    fresh_sched.load_state_dict(sched_state)
    rest = sequence(fresh, fresh_sched, 9)
    assert first + rest[1:] == straight  # exactly equal, not just close


def test_get_last_lr_and_initial_lr():
    opt = make_opt()
    sched = sch.StepLR(opt, step_size=1, gamma=0.5)
    assert sched.get_last_lr() == list(LRS)
    sched.step()
    assert sched.get_last_lr() == [LRS[0] / 2, LRS[1] / 2]
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS)


def test_errors():
    opt = make_opt()
    with pytest.raises(TypeError, match="optimizer"):
        sch.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        sch.StepLR(make_opt(), step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="lr_lambdas"):
        sch.LambdaLR(opt, [lambda e: 1.0])
    with pytest.raises(ValueError, match="total_steps"):
        sch.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        groups = [{"params": [Parameter(np.zeros(1))]}]

        class NoMomentum(optim.Optimizer):
            def __init__(self, params):
                super().__init__(params, dict(lr=0.1))

        sch.OneCycleLR(NoMomentum(groups), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="milestone"):
        sch.SequentialLR(opt, [sch.StepLR(opt, 2), sch.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="pct_start"):
        sch.OneCycleLR(opt, max_lr=0.1, total_steps=5, pct_start=1.5)
