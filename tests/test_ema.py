"""ExponentialMovingAverage: agreement with torch's AveragedModel + get_ema_multi_avg_fn, the closed form of
the average, the optimizer step hook, swapping the weights in and out, state round trips and errors."""
import numpy as np
import pytest

from minigru import backend, nn, optim


def small_model(rng=0, dtype=np.float64):
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype),
                         nn.ReLU())


def float_entries(model):
    return {k: v for k, v in model.state_dict().items() if np.dtype(v.dtype).kind == "f"}


@pytest.mark.parametrize("use_buffers", [False, True])
def test_matches_torch_averaged_model(xp, use_buffers):
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    decay, rng = 0.8, np.random.default_rng(0)
    ours = small_model()
    ema = optim.ExponentialMovingAverage(ours, decay=decay, use_buffers=use_buffers)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
                                 torch.nn.ReLU()).double()
    averaged = AveragedModel(theirs, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)
    for _ in range(5):                           # any sequence of weights: here random ones, the same on both sides
        values = {k: rng.standard_normal(v.shape) for k, v in float_entries(ours).items()}
        ours.load_state_dict(values, strict=False)
        theirs.load_state_dict({k: torch.tensor(v) for k, v in values.items()}, strict=False)
        ema.update()
        averaged.update_parameters(theirs)
    expected = {k[len("module."):]: v.detach().numpy() for k, v in averaged.state_dict().items()
                if k.startswith("module.") and v.is_floating_point()}
    with ema.average_weights():
        got = {k: backend.to_numpy(v).copy() for k, v in float_entries(ours).items()}
    assert set(got) == set(expected)
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_hook_follows_every_optimizer_step_and_matches_the_closed_form(xp):
    # a_T = decay^(T-1)·w_1 + Σ_{t=2..T} (1 - decay)·decay^(T-t)·w_t (unrolling eq. O10 from a_1 = w_1)
    decay, rng = 0.7, np.random.default_rng(1)
    model = nn.Linear(4, 3, rng=0, dtype=np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = optim.ExponentialMovingAverage(model, decay=decay).attach(opt)
    snapshots = []
    for _ in range(6):
        for p in model.parameters():
            p.grad[...] = xp.asarray(rng.standard_normal(p.shape))
        opt.step()
        snapshots.append({k: backend.to_numpy(v).copy() for k, v in model.state_dict().items()})
    T = len(snapshots)
    assert ema.n_averaged == T
    for key in snapshots[0]:
        expected = decay ** (T - 1) * snapshots[0][key] + sum(
            (1 - decay) * decay ** (T - t) * snapshots[t - 1][key] for t in range(2, T + 1))
        np.testing.assert_allclose(backend.to_numpy(ema.average[key]), expected, rtol=1e-12)
    ema.detach()
    opt.step()
    assert ema.n_averaged == T                   # detached: the average no longer moves


def test_average_weights_swaps_in_and_restores_exactly(xp):
    model = small_model(dtype=np.float32)
    ema = optim.ExponentialMovingAverage(model, decay=0.5)
    ema.update()
    for p in model.parameters():
        p.data += 1.0                            # the live weights move away from the average
    ema.update()
    before = {k: backend.to_numpy(v).copy() for k, v in model.state_dict().items()}
    with ema.average_weights() as inside:
        assert inside is model
        for key, value in ema.average.items():
            np.testing.assert_allclose(backend.to_numpy(model.state_dict()[key]),
                                       backend.to_numpy(value).astype(np.float32))
            assert model.state_dict()[key].dtype == np.float32
        np.testing.assert_allclose(backend.to_numpy(model[0].weight.data), before["0.weight"] - 0.5, rtol=1e-6)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(value), before[key])


def test_float32_model_keeps_a_float64_average():
    # with decay 0.999 each update moves the average by 1e-3 of a 1e-5 difference: lost in float32, kept in float64
    model = nn.Linear(1, 1, bias=False, rng=0, dtype=np.float32)
    model.weight.data[...] = 1.0
    ema = optim.ExponentialMovingAverage(model, decay=0.999)
    ema.update()
    model.weight.data[...] = np.float32(1.0 + 1e-5)
    for _ in range(10):
        ema.update()
    expected = 1.0 + (np.float64(np.float32(1.0 + 1e-5)) - 1.0) * (1 - 0.999 ** 10)
    assert abs(float(ema.average["weight"][0, 0]) - expected) < 1e-12


def test_state_dict_round_trip_continues_identically(xp):
    rng = np.random.default_rng(2)
    first, second = small_model(), small_model()
    ema1 = optim.ExponentialMovingAverage(first, decay=0.9, use_buffers=True)
    for _ in range(3):
        first.load_state_dict({k: rng.standard_normal(v.shape) for k, v in float_entries(first).items()},
                              strict=False)
        ema1.update()
    ema2 = optim.ExponentialMovingAverage(second, decay=0.1)
    ema2.load_state_dict(ema1.state_dict())
    assert (ema2.decay, ema2.use_buffers, ema2.n_averaged) == (0.9, True, 3)
    values = {k: rng.standard_normal(v.shape) for k, v in float_entries(first).items()}
    for model, ema in ((first, ema1), (second, ema2)):
        model.load_state_dict(values, strict=False)
        ema.update()
    for key in ema1.average:
        np.testing.assert_array_equal(backend.to_numpy(ema1.average[key]), backend.to_numpy(ema2.average[key]))


def test_errors():
    model = small_model()
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        optim.ExponentialMovingAverage(model, decay=1.0)
    with pytest.raises(TypeError, match="Module"):
        optim.ExponentialMovingAverage(model.parameters())
    ema = optim.ExponentialMovingAverage(model)
    with pytest.raises(RuntimeError, match="no average yet"):
        ema.copy_to()
    with pytest.raises(TypeError, match="optimizer"):
        ema.attach(model)
    with pytest.raises(KeyError, match="does not average"):
        ema.load_state_dict({"decay": 0.9, "use_buffers": False, "n_averaged": 1, "average": {"nope": np.zeros(1)}})
    name, weight = next(iter(model.state_dict().items()))
    with pytest.raises(ValueError, match=r"saved average of '.*': shape \(1,"):
        ema.load_state_dict({"decay": 0.9, "use_buffers": False, "n_averaged": 1,
                             "average": {name: np.zeros((1,) + tuple(weight.shape[1:]))}})
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="callable"):
        opt.register_step_post_hook(3)


def test_step_post_hook_handle_removes_the_hook():
    model = nn.Linear(2, 2, rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    calls = []
    handle = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(o))
    opt.step()
    handle.remove()
    handle.remove()
    opt.step()
    assert calls == [opt]
