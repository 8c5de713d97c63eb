"""Trainer/fit: one step as written by hand, epochs, evaluation, schedules, NaN stop, checkpoints, exact resume,
metrics and History.

The toy layers below are written here (not taken from minigru.nn) so that these tests exercise the
training machinery on its own; the tests at the end repeat the key checks with the library's layers
and DataLoader when they exist.
"""
import math
import os

import numpy as np
import pytest

from minigru import backend, optim
from minigru.nn import Module, Parameter, Sequential
from minigru.optim import lr_scheduler
from minigru.train import (EvalResult, History, NonFiniteLossError, Trainer, accuracy, confusion_matrix, fit,
                           format_confusion_matrix, per_class_accuracy, plot_history)


# ------------------------------------------------------------------ toy parts
class ToyLinear(Module):
    def __init__(self, n_in, n_out, rng):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight = Parameter(backend.random_uniform(rng, (n_out, n_in), -bound, bound, dtype=np.float64))
        self.bias = Parameter(backend.random_uniform(rng, (n_out,), -bound, bound, dtype=np.float64))

    def forward(self, x):
        self._save_cache(x)
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dout):
        x = self._pop_cache()
        self.weight.grad += dout.T @ x
        self.bias.grad += dout.sum(axis=0)
        return dout @ self.weight.data


class ToyReLU(Module):
    def forward(self, x):
        self._save_cache(x > 0)
        return x * (x > 0)

    def backward(self, dout):
        return dout * self._pop_cache()


class ToyDropout(Module):
    def __init__(self, p, seed):
        super().__init__()
        self.p = p
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        if not self.training:
            return x
        mask = (backend.random_uniform(self.rng, x.shape, dtype=x.dtype, like=x) >= self.p) / (1 - self.p)
        self._save_cache(mask)
        return x * mask

    def backward(self, dout):
        return dout * self._pop_cache()


class ToyCrossEntropy:
    """Mean cross-entropy of logits (N, K) against integer labels (N,); backward() -> dlogits."""

    def __call__(self, logits, y):
        xp = backend.get_array_module(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        self._cache = (xp.exp(log_probs), y)
        return -log_probs[xp.arange(len(y)), y].mean()

    def backward(self):
        probs, y = self._cache
        d = probs.copy()
        d[backend.get_array_module(d).arange(len(y)), y] -= 1
        return d / len(y)


class ToyLoader:
    """Shuffles and augments (adds noise) with its own Generator; state_dict() saves that Generator."""

    def __init__(self, x, y, batch_size, seed, noise=0.1, shuffle=True):
        self.x, self.y, self.batch_size, self.noise, self.shuffle = x, y, batch_size, noise, shuffle
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.y)) if self.shuffle else np.arange(len(self.y))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.x[idx] + self.noise * self.rng.standard_normal(self.x[idx].shape)
            yield backend.to_backend(x), backend.to_backend(self.y[idx])

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


def blobs(n=60, classes=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3 * rng.standard_normal((classes, dim))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.standard_normal((n, dim)), y.astype(np.int64)


def toy_model(seed=0, dropout=0.2):
    rng = np.random.default_rng(seed)
    return Sequential(ToyLinear(4, 8, rng), ToyReLU(), ToyDropout(dropout, seed + 1), ToyLinear(8, 3, rng))


def weights(model):
    return {k: backend.to_numpy(v).copy() for k, v in model.state_dict().items()}


def run(kind="sgd", epochs=3, seed=0, **options):
    """A fresh model, optimizer, scheduler and loaders, as a script would build them."""
    x, y = blobs(seed=seed)
    model = toy_model(seed)
    if kind == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
        sched = lr_scheduler.OneCycleLR(opt, max_lr=0.05, epochs=epochs, steps_per_epoch=4)
    train = ToyLoader(x, y, batch_size=16, seed=seed + 7)  # 60 samples: 4 batches, the last one short
    val = ToyLoader(x[:30], y[:30], batch_size=16, seed=0, noise=0.0, shuffle=False)
    trainer = Trainer(model, opt, ToyCrossEntropy(), scheduler=sched, progress=False, **options)
    return trainer, train, val


# -------------------------------------------------------------------- steps
def test_fit_equals_the_loop_written_by_hand(xp):
    trainer, train, val = run("sgd", clip_grad_norm=0.5)
    history = trainer.fit(train, 3, val)

    ref, ref_train, ref_val = run("sgd")
    model, opt, loss_fn, sched = ref.model, ref.optimizer, ToyCrossEntropy(), ref.scheduler
    params = list(model.parameters())
    for epoch in range(3):
        losses, sizes, correct = [], [], 0
        lr_at_start = opt.param_groups[0]["lr"]
        for x, y in ref_train:
            model.train()
            opt.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            model.backward(loss_fn.backward())
            grads = np.concatenate([backend.to_numpy(p.grad).ravel() for p in params])
            scale = min(1.0, 0.5 / (np.linalg.norm(grads) + 1e-6))
            for p in params:
                p.grad *= scale
            opt.step()
            losses.append(float(loss))
            sizes.append(len(y))
            correct += int((backend.to_numpy(logits).argmax(1) == backend.to_numpy(y)).sum())
        sched.step()
        assert history.train_loss[epoch] == pytest.approx(np.average(losses, weights=sizes), rel=1e-12)
        assert history.train_accuracy[epoch] == correct / 60
        assert history.lr[epoch] == lr_at_start
    for k, w in weights(model).items():  # the clipping norm is summed in another order here: rounding only
        np.testing.assert_allclose(weights(trainer.model)[k], w, rtol=1e-12, atol=1e-15)
    model.eval()
    logits = backend.to_numpy(model(backend.to_backend(val.x)))
    expected_loss = float(ToyCrossEntropy()(logits, val.y))
    assert history.val_loss[-1] == pytest.approx(expected_loss, rel=1e-12)
    assert history.val_accuracy[-1] == np.mean(logits.argmax(1) == val.y)
    assert history.epoch == [1, 2, 3] and trainer.epoch == 3 and trainer.global_step == 12
    assert history.lr == [0.1, 0.1, 0.05]  # StepLR(step_size=2, gamma=0.5), stepped per epoch


def test_training_learns_the_blobs():
    trainer, train, val = run("adam", epochs=8)
    history = trainer.fit(train, 8, val)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_accuracy[-1] >= 0.9


def test_evaluate_confusion_matrix_mode_and_no_cache():
    trainer, train, val = run()
    trainer.model.train()
    result = trainer.evaluate(val)
    assert isinstance(result, EvalResult)
    assert trainer.model.training  # restored
    assert all(m.__dict__.get("_cache") is None for m in trainer.model.modules())  # no_grad kept nothing
    trainer.model.eval()
    pred = backend.to_numpy(trainer.model(backend.to_backend(val.x))).argmax(1)
    expected = np.zeros((3, 3), dtype=np.int64)
    for t, p in zip(val.y, pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(result.confusion_matrix, expected)
    assert result.accuracy == np.mean(pred == val.y)


def test_one_cycle_steps_per_batch_by_default():
    trainer, train, val = run("adam", epochs=3)
    assert trainer.scheduler_step == "batch"
    trainer.fit(train, 3)
    assert trainer.scheduler.last_epoch == 12  # 3 epochs x 4 batches
    assert trainer.history.lr[0] == pytest.approx(0.05 / 25)


def test_nan_loss_stops_with_a_clear_error():
    trainer, train, _ = run()
    train.shuffle = False
    train.x = train.x.copy()
    train.x[20] = np.nan  # sample 20 is in batch 1 (batches of 16)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(train, 2)
    message = str(err.value)
    assert "at epoch 1, batch 1 " in message and "learning rate" in message and "clip" in message
    assert "normalised" in message and "gradcheck" in message
    assert trainer.global_step == 1  # only batch 0 was applied: the NaN batch never reached the weights
    assert all(np.isfinite(w).all() for w in weights(trainer.model).values())


def test_clip_grad_norm_is_applied_before_the_step():
    trainer, train, _ = run(clip_grad_norm=0.01)
    seen = []
    step = trainer.optimizer.step

    def spy():
        seen.append(math.sqrt(sum(float((p.grad ** 2).sum()) for p in trainer.model.parameters())))
        step()

    trainer.optimizer.step = spy
    trainer.fit(train, 1)
    assert len(seen) == 4 and max(seen) <= 0.01 + 1e-12


def test_callbacks_and_early_stop():
    trainer, train, val = run()
    calls = []

    def stop_after_two(tr, record):
        calls.append(record["epoch"])
        tr.stop_training = record["epoch"] == 2

    trainer.callbacks.append(stop_after_two)
    history = trainer.fit(train, 5, val)
    assert calls == [1, 2] and len(history) == 2


def test_progress_false_prints_nothing_and_true_shows_a_bar(capsys):
    trainer, train, val = run()
    trainer.fit(train, 1, val)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    trainer.progress = True
    trainer.fit(train, 2, val)
    out = capsys.readouterr()
    assert "epoch 2/2" in out.out + out.err and "val acc" in out.out + out.err
    trainer.progress = "text"                              # the terminal bar, even inside Jupyter
    trainer.fit(train, 3, val)
    out = capsys.readouterr()
    assert "epoch 3/3" in out.out + out.err and "val acc" in out.out + out.err
    trainer.progress = "bars"
    with pytest.raises(ValueError, match="progress must be True, False or 'text'"):
        trainer.fit(train, 4, val)


def test_fit_with_epochs_already_done_warns():
    trainer, train, _ = run()
    trainer.fit(train, 1)
    with pytest.warns(UserWarning, match="epochs=2 to train 1 more"):
        trainer.fit(train, 1)


def test_bad_arguments():
    trainer, train, _ = run()
    with pytest.raises(ValueError, match="scheduler_step"):
        Trainer(trainer.model, trainer.optimizer, ToyCrossEntropy(), scheduler_step="step")
    with pytest.raises(ValueError, match="monitor"):
        Trainer(trainer.model, trainer.optimizer, ToyCrossEntropy(), monitor="accuracy")
    with pytest.raises(TypeError, match=r"\(x, y\) pairs"):
        trainer.fit([np.zeros((2, 4))], 1)
    with pytest.raises(ValueError, match="no batches"):
        trainer.fit([], 1)


def test_functional_fit():
    trainer, train, val = run()
    history = fit(trainer.model, train, 2, trainer.optimizer, ToyCrossEntropy(), val_loader=val, progress=False)
    assert len(history) == 2 and history.val_accuracy[-1] is not None


# -------------------------------------------------------- checkpoints/resume
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_resume_is_bit_identical(tmp_path, kind):
    straight, train, val = run(kind, epochs=4)
    straight.fit(train, 4, val)

    first, train, val = run(kind, epochs=4)
    first.fit(train, 2, val, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.npz").exists()

    resumed, train, val = run(kind, epochs=4)  # fresh objects, as after a restart
    resumed.fit(train, 4, val, resume_from=tmp_path / "last.npz")

    for k, w in weights(straight.model).items():
        np.testing.assert_array_equal(weights(resumed.model)[k], w, err_msg=k)
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values()):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert resumed.scheduler.state_dict() == straight.scheduler.state_dict()
    assert resumed.global_step == straight.global_step and resumed.epoch == 4
    for field in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        assert getattr(resumed.history, field) == getattr(straight.history, field)


@pytest.mark.parametrize("forget", ["loader", "dropout"])
def test_resume_without_a_random_state_differs(tmp_path, forget):
    """The control for the test above: leaving out one RNG does change the result."""
    straight, train, _ = run(epochs=4)
    straight.fit(train, 4)
    first, train, _ = run(epochs=4)
    first.fit(train, 2, checkpoint_dir=tmp_path)

    resumed, train, _ = run(epochs=4)
    resumed.load_checkpoint(tmp_path / "last.npz", train)
    if forget == "loader":
        train.rng = np.random.default_rng(7)  # the loader's state as at the start, not after 2 epochs
    else:
        resumed.model[2].rng = np.random.default_rng(1)
    resumed.fit(train, 4)
    assert any(not np.array_equal(weights(resumed.model)[k], w) for k, w in weights(straight.model).items())


def test_best_and_last_checkpoints(tmp_path):
    trainer, train, val = run("adam", epochs=5)
    trainer.monitor = "val_loss"
    saved = []
    trainer.callbacks.append(lambda tr, rec: saved.append(rec["val_loss"]))
    trainer.fit(train, 5, val, checkpoint_dir=tmp_path, checkpoint_every=2)
    best_epoch = int(np.argmin(saved)) + 1
    fresh, _, _ = run("adam", epochs=5)
    loaded = fresh.load_checkpoint(tmp_path / "best.npz")
    assert loaded.epoch == best_epoch and fresh.best_value == min(saved)
    assert fresh.load_checkpoint(tmp_path / "last.npz").epoch == 5
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "last.npz"]  # no temporary files left


# ------------------------------------------------------------------ metrics
def test_confusion_matrix_and_accuracy_by_hand(xp):
    y = xp.asarray([0, 0, 1, 2, 2, 2])
    pred = xp.asarray([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y, pred, 4)
    assert backend.backend_of(cm) == backend.backend_of(y)
    np.testing.assert_array_equal(backend.to_numpy(cm), [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    scores = xp.asarray(np.eye(4)[[0, 1, 1, 2, 0, 2]])
    assert accuracy(scores, y) == 4 / 6 and accuracy(pred, y) == 4 / 6
    np.testing.assert_array_equal(backend.to_numpy(confusion_matrix(y, scores, 4)), backend.to_numpy(cm))
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(acc[3])
    text = format_confusion_matrix(cm, ["cat", "dog", "bird", "frog"])
    assert "cat" in text and " 66.7%" in text and "n/a" in text and "overall accuracy 66.67% on 6" in text


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"\[0, 2\].*from 0 to 3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.array([0, 1]), np.array([0, 1, 1]), 3)


# ------------------------------------------------------------------ history
def test_history_json_best_and_plot(tmp_path):
    h = History()
    h.append(epoch=1, train_loss=np.float32(1.5), train_accuracy=0.4, lr=0.1, seconds=1.0)
    h.append(epoch=2, train_loss=1.0, train_accuracy=0.6, val_loss=1.1, val_accuracy=0.55, lr=0.05, seconds=1.0)
    assert h.val_loss == [None, 1.1] and isinstance(h.train_loss[0], float)
    assert h.best("val_accuracy")["epoch"] == 2 and h.best("train_loss")["epoch"] == 2
    again = History.from_json(h.to_json(tmp_path / "h.json"))
    assert again == h and History.from_json(tmp_path / "h.json") == h
    with pytest.raises(ValueError, match="unknown"):
        h.append(accuracy=1.0)
    pytest.importorskip("matplotlib")
    plot_history(h, tmp_path / "curves.png", title="toy")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------- with minigru's own layers and DataLoader
def library_run(epochs=4, seed=0):
    """nn.Linear/ReLU/Dropout/CrossEntropyLoss and data.DataLoader with augmentation, in float32."""
    nn = pytest.importorskip("minigru.nn")
    data = pytest.importorskip("minigru.data")
    if not all(hasattr(nn, name) for name in ("Linear", "ReLU", "Dropout", "Flatten", "CrossEntropyLoss")):
        pytest.skip("minigru.nn layers not available yet")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 48)
    images = (rng.standard_normal((48, 1, 4, 4)) + y[:, None, None, None]).astype(np.float32)
    augment = data.Compose([data.RandomHorizontalFlip(), data.RandomCrop(4, padding=1)])
    train = data.DataLoader((images, y), batch_size=10, shuffle=True, seed=seed, transform=augment)
    val = data.DataLoader((images[:20], y[:20]), batch_size=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12, rng=seed), nn.ReLU(), nn.Dropout(0.3, rng=seed + 1),
                          nn.Linear(12, 3, rng=seed + 2))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=epochs, steps_per_epoch=len(train))
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched, clip_grad_norm=2.0, progress=False)
    return trainer, train, val


def test_library_parts_resume_bit_identical(tmp_path):
    straight, train, val = library_run()
    straight.fit(train, 4, val)
    first, train, val = library_run()
    first.fit(train, 3, val, checkpoint_dir=tmp_path)
    resumed, train, val = library_run()
    resumed.fit(train, 4, val, resume_from=tmp_path / "last.npz")
    assert straight.model[1].weight.dtype == np.float32
    for k, w in weights(straight.model).items():
        np.testing.assert_array_equal(weights(resumed.model)[k], w, err_msg=k)
    assert resumed.history.train_loss == straight.history.train_loss
    assert resumed.history.val_accuracy == straight.history.val_accuracy


def test_library_functional_fit_defaults_to_cross_entropy():
    trainer, train, val = library_run()
    history = fit(trainer.model, train, 2, trainer.optimizer, val_loader=val, progress=False)
    assert len(history) == 2 and 0.0 <= history.val_accuracy[-1] <= 1.0


@pytest.mark.parametrize("entry", [[1, 2], "step", {"global_step": "3"}, {"global_step": -1},
                                   {"global_step": True}, {"global_step": 2, "best_value": "0.5"}])
def test_a_checkpoint_with_a_damaged_trainer_entry_is_a_checkpoint_error(tmp_path, entry):
    """The Trainer's own part of ``extra`` is checked like the rest of the file: one error naming it."""
    from minigru.train import checkpoint as ckpt
    trainer, train, val = run("sgd", epochs=2)
    trainer.fit(train, 1, val, checkpoint_dir=tmp_path)
    path = tmp_path / "damaged.npz"
    ckpt.save_checkpoint(path, trainer.model, trainer.optimizer, trainer.scheduler, epoch=1,
                         history=trainer.history, extra={"trainer": entry})
    fresh, train, val = run("sgd", epochs=2)
    with pytest.raises(ckpt.CheckpointError, match="damaged.npz.*trainer entry"):
        fresh.load_checkpoint(path)


@pytest.mark.parametrize("index", [-1, 99])
def test_optimizer_state_naming_a_parameter_it_does_not_have_is_refused(index):
    """A negative index used to restore the state silently into the last parameter."""
    trainer, train, val = run("adam", epochs=1)
    trainer.fit(train, 1, val)
    state = trainer.optimizer.state_dict()
    state["state"] = {index: next(iter(state["state"].values()))}
    with pytest.raises(IndexError, match=f"names parameter {index}"):
        trainer.optimizer.load_state_dict(state)
