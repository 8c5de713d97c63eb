"""Optimizers and gradient clipping: step-by-step agreement with torch.optim, state round trips, errors."""
import json

import numpy as np
import pytest

from minigru import backend, nn, optim
from minigru.nn import Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 7


def make_params(xp, rng, dtype=np.float64, shapes=SHAPES):
    return [Parameter(xp.asarray(rng.standard_normal(s).astype(dtype))) for s in shapes]


def grad_sequence(rng, shapes=SHAPES, steps=STEPS, dtype=np.float64):
    # Scales vary per step so that Adam's normalisation and amsgrad's maximum actually matter.
    return [[(rng.standard_normal(s) * rng.uniform(0.1, 3.0)).astype(dtype) for s in shapes] for _ in range(steps)]


def torch_run(torch_cls, init, grads, groups=None, lr_changes=None, **kwargs):
    """Apply the gradient sequence with torch.optim; returns the final parameters as numpy."""
    torch = pytest.importorskip("torch")
    params = [torch.tensor(a, requires_grad=True) for a in init]
    spec = params if groups is None else [{**g, "params": [params[i] for i in g["params"]]} for g in groups]
    opt = torch_cls(spec, **kwargs)
    for t, step_grads in enumerate(grads):
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        if lr_changes and t in lr_changes:
            for group in opt.param_groups:
                group["lr"] = lr_changes[t]
        opt.step()
    return [p.detach().numpy() for p in params]


def minigru_run(cls, params, grads, groups=None, lr_changes=None, **kwargs):
    spec = params if groups is None else [{**g, "params": [params[i] for i in g["params"]]} for g in groups]
    opt = cls(spec, **kwargs)
    for t, step_grads in enumerate(grads):
        for p, g in zip(params, step_grads):
            p.grad[...] = backend.to_backend(g, backend.backend_of(p.data))
        if lr_changes and t in lr_changes:
            for group in opt.param_groups:
                group["lr"] = lr_changes[t]
        opt.step()
    return opt


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, dampening=0.5, weight_decay=0.05),
]
ADAM_CASES = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.02, amsgrad=True, weight_decay=0.05),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-3),
]
ADAMW_CASES = [dict(), dict(lr=0.01, weight_decay=0.1, amsgrad=True), dict(lr=0.03, betas=(0.5, 0.9))]
GROUPS = [{"params": [0, 2]}, {"params": [1], "lr": 0.003, "weight_decay": 0.0}]


def _cases():
    for kw in SGD_CASES:
        yield pytest.param("SGD", kw, id="SGD-" + "-".join(f"{k}={v}" for k, v in kw.items()))
    for kw in ADAM_CASES:
        yield pytest.param("Adam", kw, id="Adam-" + "-".join(f"{k}={v}" for k, v in kw.items()))
    for kw in ADAMW_CASES:
        yield pytest.param("AdamW", kw, id="AdamW-" + "-".join(f"{k}={v}" for k, v in kw.items()))


def _max_error(ours, theirs):
    return max(float(np.max(np.abs(backend.to_numpy(p.data) - t))) for p, t in zip(ours, theirs))


@pytest.mark.parametrize("name, kwargs", list(_cases()))
def test_matches_torch_float64(xp, rng, name, kwargs):
    torch = pytest.importorskip("torch")
    params = make_params(xp, rng)
    init = [backend.to_numpy(p.data).copy() for p in params]
    grads = grad_sequence(rng)
    minigru_run(getattr(optim, name), params, grads, **kwargs)
    expected = torch_run(getattr(torch.optim, name), init, grads, **kwargs)
    assert _max_error(params, expected) <= 1e-10
    assert all(p.data.dtype == np.float64 for p in params)
    # the parameters really moved (a no-op optimizer would pass the comparison above only if torch also did nothing)
    assert _max_error(params, init) > 1e-3


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                                          ("Adam", dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
                                          ("AdamW", dict(lr=0.01))])
def test_param_groups_and_lr_changes_match_torch(xp, rng, name, kwargs):
    torch = pytest.importorskip("torch")
    params = make_params(xp, rng)
    init = [backend.to_numpy(p.data).copy() for p in params]
    grads = grad_sequence(rng)
    lr_changes = {3: 0.02, 5: 0.005}  # what a scheduler does between steps
    minigru_run(getattr(optim, name), params, grads, groups=GROUPS, lr_changes=lr_changes, **kwargs)
    expected = torch_run(getattr(torch.optim, name), init, grads, groups=GROUPS, lr_changes=lr_changes, **kwargs)
    assert _max_error(params, expected) <= 1e-10


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                                          ("Adam", dict(lr=0.01, weight_decay=0.01)), ("AdamW", dict(lr=0.01))])
def test_float32_stays_float32_and_matches_torch(xp, rng, name, kwargs):
    torch = pytest.importorskip("torch")
    params = make_params(xp, rng, dtype=np.float32)
    init = [backend.to_numpy(p.data).copy() for p in params]
    grads = grad_sequence(rng, dtype=np.float32)
    opt = minigru_run(getattr(optim, name), params, grads, **kwargs)
    expected = torch_run(getattr(torch.optim, name), init, grads, **kwargs)
    assert all(p.data.dtype == np.float32 for p in params)
    assert all(a.dtype == np.float32 for s in opt.state.values() for a in s.values() if hasattr(a, "dtype"))
    assert _max_error(params, expected) <= 1e-5


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                                          ("Adam", dict(lr=0.1, weight_decay=0.1))])
def test_step_leaves_grad_untouched(xp, rng, name, kwargs):
    params = make_params(xp, rng)
    for p in params:
        p.grad[...] = xp.asarray(rng.standard_normal(p.shape))
    before = [p.grad.copy() for p in params]
    getattr(optim, name)(params, **kwargs).step()
    assert all(bool((p.grad == b).all()) for p, b in zip(params, before))


def test_zero_grad(xp, rng):
    params = make_params(xp, rng)
    for p in params:
        p.grad[...] = 1.0
    optim.SGD(params, lr=0.1).zero_grad()
    assert all(float(abs(p.grad).max()) == 0.0 for p in params)


def _plain(obj):
    """True if obj holds only what an .npz/JSON checkpoint can store (no pickle)."""
    if isinstance(obj, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return obj is None or isinstance(obj, (bool, int, float, str)) or backend.is_array(obj)


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01))])
def test_state_dict_round_trip_is_exact(xp, rng, name, kwargs):
    cls = getattr(optim, name)
    grads = grad_sequence(rng, steps=6)
    init = make_params(xp, rng)
    straight = [Parameter(p.data.copy()) for p in init]
    minigru_run(cls, straight, grads, groups=GROUPS, **kwargs)

    first = [Parameter(p.data.copy()) for p in init]
    opt = minigru_run(cls, first, grads[:3], groups=GROUPS, **kwargs)
    saved = opt.state_dict()
    assert _plain(saved)
    saved = json.loads(json.dumps(saved, default=lambda a: backend.to_numpy(a).tolist()))  # lists, str keys
    resumed = [Parameter(p.data.copy()) for p in first]
    opt2 = cls([{**g, "params": [resumed[i] for i in g["params"]]} for g in GROUPS], **kwargs)
    opt2.load_state_dict(saved)
    for t in range(3, 6):
        for p, g in zip(resumed, grads[t]):
            p.grad[...] = xp.asarray(g)
        opt2.step()
    for a, b in zip(straight, resumed):
        assert bool((a.data == b.data).all())
    assert all(backend.backend_of(v) == backend.backend_of(init[0].data)
               for s in opt2.state.values() for v in s.values() if backend.is_array(v))


def test_state_dict_is_a_snapshot(rng):
    params = make_params(np, rng)
    opt = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    saved = opt.state_dict()
    before = saved["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], before)


def test_load_state_dict_rejects_other_model(rng):
    opt = optim.Adam(make_params(np, rng), lr=0.1)
    for p in opt.param_groups[0]["params"]:
        p.grad[...] = 1.0
    opt.step()
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="holds 3 parameters"):
        optim.Adam(make_params(np, rng, shapes=[(3, 4)]), lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="shape"):
        optim.Adam(make_params(np, rng, shapes=[(4, 3), (5,), (2, 3, 2)]), lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="group"):
        two = make_params(np, rng)
        optim.Adam([{"params": two[:1]}, {"params": two[1:]}], lr=0.1).load_state_dict(saved)


def test_construction_errors(rng):
    params = make_params(np, rng)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = Parameter(np.zeros(3))

    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="model.parameters"):
        optim.SGD(Tiny(), lr=0.1)
    with pytest.raises(TypeError, match="Parameters"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": params[:2]}, {"params": params[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        optim.SGD([{"params": params, "betas": (0.9, 0.99)}], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam(params, lr=-1.0)


def test_single_parameter_and_generator_are_accepted(rng):
    p = make_params(np, rng)[0]
    assert optim.SGD(p, lr=0.1).param_groups[0]["params"] == [p]
    assert len(optim.Adam(iter(make_params(np, rng))).param_groups[0]["params"]) == 3


# ---------------------------------------------------------------- clipping
def same_gradients_in_torch(torch, xp, rng):
    """minigru parameters with random gradients, and torch tensors holding the same gradients."""
    params = make_params(xp, rng)
    grads = grad_sequence(rng, steps=1)[0]
    tparams = []
    for p, g in zip(params, grads):
        p.grad[...] = xp.asarray(g)
        t = torch.zeros(p.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(g)
        tparams.append(t)
    return params, tparams


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(xp, rng, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params, tparams = same_gradients_in_torch(torch, xp, rng)
    total = optim.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    expected_total = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert abs(float(total) - float(expected_total)) <= 1e-12 * float(expected_total)
    assert backend.backend_of(total) == backend.backend_of(params[0].data)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(backend.to_numpy(p.grad), t.grad.numpy(), rtol=1e-12, atol=0)
    if max_norm < float(total):  # and the clipped norm is (just under) max_norm
        assert abs(float(optim.get_total_norm(params, norm_type)) - max_norm) < 1e-5


def test_clip_grad_norm_by_hand():
    p = Parameter(np.zeros(2))
    q = Parameter(np.zeros(1))
    p.grad[...] = [3.0, 0.0]
    q.grad[...] = [4.0]  # joint 2-norm 5
    total = optim.clip_grad_norm_([p, q], 1.0)
    assert float(total) == 5.0
    np.testing.assert_allclose(p.grad, [3 / (5 + 1e-6), 0.0], rtol=1e-15)
    np.testing.assert_allclose(q.grad, [4 / (5 + 1e-6)], rtol=1e-15)


def test_clip_grad_norm_nonfinite(rng):
    params = make_params(np, rng)
    params[1].grad[2] = np.inf
    with pytest.raises(RuntimeError, match="inf"):
        optim.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert np.isinf(float(optim.clip_grad_norm_(params, 1.0)))


def test_clip_grad_norm_float32_and_empty(rng):
    params = make_params(np, rng, dtype=np.float32)
    for p in params:
        p.grad[...] = 10.0
    optim.clip_grad_norm_(params, 1.0)
    assert all(p.grad.dtype == np.float32 for p in params)
    assert float(optim.clip_grad_norm_([], 1.0)) == 0.0
    with pytest.raises(TypeError, match="model.parameters"):
        optim.clip_grad_norm_(nn.Sequential(), 1.0)


def test_clip_grad_value_matches_torch(xp, rng):
    torch = pytest.importorskip("torch")
    params, tparams = same_gradients_in_torch(torch, xp, rng)
    optim.clip_grad_value_(params, 0.7)
    torch.nn.utils.clip_grad_value_(tparams, 0.7)
    for p, t in zip(params, tparams):
        np.testing.assert_array_equal(backend.to_numpy(p.grad), t.grad.numpy())
    assert max(float(abs(p.grad).max()) for p in params) == 0.7


def test_state_on_another_backend_is_a_clear_error(rng, cupy_xp):
    cupy = cupy_xp
    p = make_params(np, rng)[0]
    opt = optim.Adam([p], lr=0.1)
    opt.step()
    p.data, p.grad = cupy.asarray(p.data), cupy.asarray(p.grad)  # what model.to("cupy") does
    with pytest.raises(backend.BackendMismatchError, match="after the optimizer was built"):
        opt.step()
    opt.load_state_dict(opt.state_dict())  # moves the state onto the parameters' backend
    opt.step()
