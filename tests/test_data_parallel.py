"""nn.DataParallel: a batch split over replicas, one thread each, against one model on the whole batch
(outputs, input and parameter gradients), finite differences with batch norm and dropout, running statistics,
shared weights, errors from a replica's thread, and the Trainer's ``replicas``."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigru import nn, optim
from minigru.gradcheck import check_module, rel_error
from minigru.train import Trainer


def conv_net(rng=0, batch_norm=False, dropout=0.0):
    """(N, 2, 4, 4) -> (N, 5): a convolution, optional batch norm, ReLU, pooling, dropout and a linear layer."""
    layers = [nn.Conv2d(2, 3, 3, padding=1, rng=rng)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(3))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(dropout, rng=rng + 1), nn.Linear(12, 5, rng=rng)]
    return nn.Sequential(*layers).double()


def run(net, x, dout):
    out = net(x)
    dx = net.backward(dout)
    return out, dx


@settings(max_examples=30, deadline=None, derandomize=True)
@given(replicas=st.integers(1, 4), batch=st.integers(0, 7))
def test_replicas_give_the_whole_batchs_outputs_and_gradients(replicas, batch):
    """Without batch statistics, splitting the batch changes nothing: the outputs, dx and every parameter's
    gradient equal one model's on the whole batch (batch 0 and batches smaller than the replicas included)."""
    rng = np.random.default_rng(batch)
    model = conv_net()
    alone = copy.deepcopy(model)
    x, dout = rng.standard_normal((batch, 2, 4, 4)), rng.standard_normal((batch, 5))
    out, dx = run(nn.DataParallel(model, replicas), x, dout)
    out_alone, dx_alone = run(alone, x, dout)
    assert out.shape == (batch, 5) and dx.shape == x.shape
    assert rel_error(out, out_alone) < 1e-12 and rel_error(dx, dx_alone) < 1e-12
    for (name, p), q in zip(model.named_parameters(), alone.parameters()):
        assert rel_error(p.grad, q.grad) < 1e-12, name


def test_gradients_accumulate_like_one_models():
    """Two backward passes add up in the module's .grad, as Module.backward does; replicas keep nothing."""
    rng = np.random.default_rng(1)
    model, alone = conv_net(), conv_net()
    net = nn.DataParallel(model, 3)
    for _ in range(2):
        x, dout = rng.standard_normal((7, 2, 4, 4)), rng.standard_normal((7, 5))
        run(net, x, dout)
        run(alone, x, dout)
    for p, q in zip(model.parameters(), alone.parameters()):
        assert rel_error(p.grad, q.grad) < 1e-12


@pytest.mark.parametrize("replicas, batch", [(2, 4), (3, 7), (2, 2)])
def test_batch_norm_normalises_each_chunk_and_passes_finite_differences(replicas, batch):
    """In training, each replica's batch norm uses its own chunk's statistics (ghost batches): the outputs are
    the model's on each chunk separately, not on the whole batch; the backward pass of that function passes
    centred finite differences for the input and every parameter."""
    rng = np.random.default_rng(batch)
    model = conv_net(batch_norm=True)
    x = rng.standard_normal((batch, 2, 4, 4))
    net = nn.DataParallel(copy.deepcopy(model), replicas)
    out = net(x)
    sizes = [len(c) for c in np.array_split(np.arange(batch), replicas)]
    starts = np.cumsum([0] + sizes)
    per_chunk = np.concatenate([copy.deepcopy(model)(x[a:b]) for a, b in zip(starts, starts[1:])])
    assert rel_error(out, per_chunk) < 1e-12
    assert rel_error(out, copy.deepcopy(model)(x)) > 1e-3          # not the whole batch's statistics
    report = check_module(nn.DataParallel(model, replicas), x, verbose=False)
    assert report.passed, str(report)


def test_dropout_draws_other_masks_in_each_replica_and_replays():
    """Identical samples in two chunks get different dropout masks; the same seeds give the same outputs; and a
    gradient check (which replays the module's generators) passes with dropout on."""
    x = np.ones((4, 2, 4, 4))
    out = nn.DataParallel(conv_net(dropout=0.5), 2)(x)
    assert np.abs(out[0] - out[2]).max() > 1e-6 and np.abs(out[1] - out[3]).max() > 1e-6
    again = nn.DataParallel(conv_net(dropout=0.5), 2)(x)
    np.testing.assert_array_equal(out, again)
    report = check_module(nn.DataParallel(conv_net(dropout=0.5), 2),
                          np.random.default_rng(0).standard_normal((4, 2, 4, 4)), verbose=False)
    assert report.passed, str(report)


def test_only_the_modules_chunk_updates_the_running_statistics():
    """The module's running statistics move with its own chunk only; replicas' updates are dropped, and in
    evaluation every replica normalises with the module's statistics."""
    rng = np.random.default_rng(2)
    model = conv_net(batch_norm=True)
    reference = copy.deepcopy(model)
    x = rng.standard_normal((6, 2, 4, 4)) + 3.0
    nn.DataParallel(model, 2)(x)
    reference(x[:3])
    norm, ref_norm = model[1], reference[1]
    np.testing.assert_allclose(norm.running_mean, ref_norm.running_mean, rtol=1e-12)
    np.testing.assert_allclose(norm.running_var, ref_norm.running_var, rtol=1e-12)
    assert int(norm.num_batches_tracked) == 1
    model.eval()
    reference.load_state_dict(model.state_dict())
    reference.eval()
    assert rel_error(nn.DataParallel(model, 2)(x), reference(x)) < 1e-12


def test_replicas_follow_the_modules_weights():
    """An optimizer step and load_state_dict change the module's weights; the replicas compute with the new ones."""
    rng = np.random.default_rng(3)
    model = conv_net()
    net = nn.DataParallel(model, 2)
    x = rng.standard_normal((4, 2, 4, 4))
    run(net, x, rng.standard_normal((4, 5)))
    optim.SGD(model.parameters(), lr=0.5).step()
    assert rel_error(net(x), copy.deepcopy(model)(x)) < 1e-12
    other = conv_net(rng=7)
    model.load_state_dict(other.state_dict())
    assert rel_error(net(x), other(x)) < 1e-12
    assert [n for n, _ in net.named_parameters()] == [f"module.{n}" for n, _ in model.named_parameters()]


class RefusesNegatives(nn.Module):
    def forward(self, x):
        if (x < 0).any():
            raise ValueError("a negative sample")
        return x * 2.0

    def backward(self, dout):
        return dout * 2.0


def test_an_error_in_a_replicas_thread_reaches_the_caller():
    """An error raised only in a replica's chunk (on another thread) reaches the caller as itself; the wrapper
    still works afterwards."""
    net = nn.DataParallel(RefusesNegatives(), 2)
    with pytest.raises(ValueError, match="a negative sample"):
        net(np.array([1.0, 2.0, 3.0, -4.0]))
    np.testing.assert_array_equal(net(np.array([1.0, 2.0, 3.0])), [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(net.backward(np.ones(3)), [2.0, 2.0, 2.0])


def test_errors():
    with pytest.raises(ValueError, match="replicas must be an integer >= 1"):
        nn.DataParallel(conv_net(), 0)
    with pytest.raises(ValueError, match="replicas must be an integer >= 1"):
        nn.DataParallel(conv_net(), True)
    with pytest.raises(TypeError, match="wraps a Module"):
        nn.DataParallel(np.zeros(3))
    net = nn.DataParallel(conv_net(), 2)
    with pytest.raises(RuntimeError, match="needs a forward"):
        net.backward(np.zeros((4, 5)))
    net(np.zeros((4, 2, 4, 4)))
    with pytest.raises(ValueError, match="dout has 3 samples, the forward had 4"):
        net.backward(np.zeros((3, 5)))


def test_trainer_with_replicas_takes_one_models_steps():
    """Trainer(replicas=2) on a model without batch statistics takes the same steps as Trainer() (to rounding),
    and keeps the model itself as trainer.model."""
    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((6, 2, 4, 4)), rng.integers(0, 5, 6)) for _ in range(3)]
    models = [conv_net(), conv_net()]
    trainers = [Trainer(m, optim.SGD(m.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss(),
                        progress=False, replicas=r) for m, r in zip(models, (1, 2))]
    assert trainers[1].model is models[1] and isinstance(trainers[1].net, nn.DataParallel)
    for x, y in batches:
        losses = [t.train_step(x, y) for t in trainers]
        assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    for p, q in zip(*(m.parameters() for m in models)):
        assert rel_error(p.data, q.data) < 1e-12


class FailsOnce(nn.Module):
    """Doubles its input; its backward raises on the first call (in whichever thread runs it)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.ones(1))
        self.failed = []

    def forward(self, x):
        self._save_cache(x)
        return x * self.weight.data

    def backward(self, dout):
        x = self._pop_cache()
        self.weight.grad += (dout * x).sum(keepdims=True)[:1]
        if not self.failed and x[0] < 0:
            self.failed.append(True)
            raise FloatingPointError("a failed backward")
        return dout * self.weight.data


def test_a_failed_backward_leaves_no_gradient_behind():
    """A replica's backward that raises after adding to its .grad: the error reaches the caller, and the next
    step's gradient is that step's alone."""
    module = FailsOnce()
    net = nn.DataParallel(module, 2)
    net(np.array([1.0, -1.0]))
    with pytest.raises(FloatingPointError, match="a failed backward"):
        net.backward(np.ones(2))
    module.zero_grad()
    net(np.array([2.0, 3.0]))
    net.backward(np.ones(2))
    np.testing.assert_array_equal(module.weight.grad, [5.0])


def test_evaluation_draws_nothing_from_the_modules_generator():
    """Dropout is off in evaluation, so an evaluation pass leaves the module's random stream where it was."""
    model = conv_net(dropout=0.5)
    state = copy.deepcopy(model[4].rng.bit_generator.state)
    model.eval()
    nn.DataParallel(model, 2)(np.ones((4, 2, 4, 4)))
    assert model[4].rng.bit_generator.state == state
