"""Checkpoints: exact round trip of every state, pickle-free .npz content, atomic writes, clear errors."""
import json
import os

import numpy as np
import pytest

from minigru import backend, optim
from minigru.nn import Module, Parameter, Sequential
from minigru.optim import lr_scheduler
from minigru.train import (CheckpointError, History, load_checkpoint, module_rngs, read_checkpoint,
                           save_checkpoint)


class Block(Module):
    """Parameters, a float and an int buffer, and a Generator (as Dropout keeps one)."""

    def __init__(self, n, seed, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weight = Parameter(backend.random_normal(rng, (n, n + 1), dtype=dtype))
        self.bias = Parameter(backend.random_normal(rng, (n,), dtype=dtype))
        self.register_buffer("running_mean", backend.random_normal(rng, (n,), dtype=dtype))
        self.register_buffer("num_batches_tracked", backend.get_xp().asarray(7, dtype=np.int64))
        self.rng = np.random.default_rng(seed + 100)


def make_model(seed=0, n=3, dtype=np.float32):
    return Sequential(Block(n, seed, dtype), Block(n, seed + 1, dtype))


class Loader:
    def __init__(self, seed):
        self.rng = np.random.Generator(np.random.MT19937(seed))  # its state holds an array (the key)
        self.epoch = 0

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.epoch = state["epoch"]


def build(seed=0):
    model = make_model(seed)
    opt = optim.Adam([{"params": list(model[0].parameters())},
                      {"params": list(model[1].parameters()), "weight_decay": 0.1}], lr=0.01, amsgrad=True)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20, three_phase=True)
    return model, opt, sched, Loader(seed + 5)


def advance(model, opt, sched, loader, rng, steps=3):
    """Change every piece of state: weights, moments, schedule, RNGs."""
    for _ in range(steps):
        for p in model.parameters():
            p.grad[...] = backend.random_normal(rng, p.shape, dtype=p.dtype, like=p.data)
        opt.step()
        sched.step()
    for _, g in module_rngs(model).items():
        g.random(5)
    loader.rng.random(11)
    loader.epoch = 4


def test_round_trip_restores_everything(tmp_path, xp):
    model, opt, sched, loader = build()
    advance(model, opt, sched, loader, np.random.default_rng(0))
    extra_rng = np.random.default_rng(99)
    extra_rng.random(3)
    history = History()
    history.append(epoch=1, train_loss=0.5, train_accuracy=0.9, lr=0.01, seconds=2.0)
    path = save_checkpoint(tmp_path / "c.npz", model, opt, sched, epoch=3, history=history, loaders=loader,
                           rngs={"augment": extra_rng}, extra={"note": "hi", "table": xp.arange(4), "n": [1, 2]})

    model2, opt2, sched2, loader2 = build(seed=1)  # different numbers everywhere
    extra_rng2 = np.random.default_rng(5)
    loaded = load_checkpoint(path, model2, opt2, sched2, loaders=loader2, rngs={"augment": extra_rng2})

    assert loaded.epoch == 3 and loaded.history == history
    assert loaded.extra["note"] == "hi" and loaded.extra["n"] == [1, 2]
    np.testing.assert_array_equal(loaded.extra["table"], np.arange(4))
    for (k, a), (k2, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert k == k2 and b.dtype == a.dtype and backend.backend_of(b) == backend.backend_of(a)
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(backend.to_numpy(a[name]), backend.to_numpy(b[name]))
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == \
           [{k: v for k, v in g.items() if k != "params"} for g in opt2.param_groups]
    assert sched2.state_dict() == sched.state_dict()
    # every generator continues with the same numbers
    for g, g2 in zip(module_rngs(model).values(), module_rngs(model2).values()):
        np.testing.assert_array_equal(g.random(4), g2.random(4))
    np.testing.assert_array_equal(loader.rng.random(4), loader2.rng.random(4))
    assert loader2.epoch == 4
    np.testing.assert_array_equal(extra_rng.random(4), extra_rng2.random(4))
    # and training continues identically
    advance(model, opt, sched, loader, np.random.default_rng(1))
    advance(model2, opt2, sched2, loader2, np.random.default_rng(1))
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))


def test_file_is_plain_npz_without_pickle(tmp_path):
    model, opt, sched, loader = build()
    advance(model, opt, sched, loader, np.random.default_rng(0))
    save_checkpoint(tmp_path / "c.npz", model, opt, sched, epoch=1, loaders={"train": loader})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        files = set(npz.files)
        assert {"model/0.weight", "model/1.num_batches_tracked", "optimizer/state/0/exp_avg",
                "__checkpoint__"} <= files
        np.testing.assert_array_equal(npz["model/1.bias"], model[1].bias.data)
        assert npz["model/0.weight"].dtype == np.float32
        assert all(npz[f].dtype != object for f in files)
        meta = json.loads(npz["__checkpoint__"].tobytes().decode("utf-8"))
    assert meta["format"] == "minigru-checkpoint" and meta["model_class"] == "Sequential"
    assert meta["optimizer"]["class"] == "Adam" and meta["scheduler"]["class"] == "OneCycleLR"
    data = read_checkpoint(tmp_path / "c.npz")
    assert data["epoch"] == 1 and set(data["model"]) == set(model.state_dict())


def test_weights_load_into_another_dtype(tmp_path):
    model = make_model(dtype=np.float32)
    save_checkpoint(tmp_path / "c.npz", model)
    model64 = make_model(seed=3, dtype=np.float64)
    load_checkpoint(tmp_path / "c.npz", model64)
    assert model64[0].weight.dtype == np.float64
    np.testing.assert_array_equal(model64[0].weight.data, model[0].weight.data.astype(np.float64))


def test_missing_and_corrupt_files(tmp_path):
    model = make_model()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.npz", model)
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "junk.npz", model)
    save_checkpoint(tmp_path / "good.npz", model)
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.npz", model)
    # one flipped byte inside the stored weights: the zip CRC check notices
    start = raw.index(np.ascontiguousarray(model[0].weight.data).tobytes())
    flipped = bytearray(raw)
    flipped[start + 3] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "flip.npz", model)
    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minigru checkpoint"):
        load_checkpoint(tmp_path / "weights.npz", model)


def test_wrong_model_is_explained(tmp_path):
    save_checkpoint(tmp_path / "c.npz", make_model(n=3))
    with pytest.raises(CheckpointError, match=r"shape mismatch: 0.weight: checkpoint \(3, 4\) vs model \(4, 5\)"):
        load_checkpoint(tmp_path / "c.npz", make_model(n=4))
    bigger = make_model()
    bigger.append(Block(3, 9))
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \['2.weight'"):
        load_checkpoint(tmp_path / "c.npz", bigger)
    with pytest.raises(CheckpointError, match=r"not in the model: \['1.weight'"):
        load_checkpoint(tmp_path / "c.npz", Sequential(Block(3, 0)))
    partial = Sequential(Block(3, 5))
    load_checkpoint(tmp_path / "c.npz", partial, strict=False)
    np.testing.assert_array_equal(partial[0].weight.data, make_model(n=3)[0].weight.data)


def test_wrong_or_missing_optimizer_and_scheduler(tmp_path):
    model, opt, sched, _ = build()
    save_checkpoint(tmp_path / "c.npz", model, opt)
    with pytest.raises(CheckpointError, match="Adam optimizer, not of a SGD"):
        load_checkpoint(tmp_path / "c.npz", model, optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="no scheduler state"):
        load_checkpoint(tmp_path / "c.npz", model, opt, sched)
    other = make_model(seed=4)
    with pytest.raises(CheckpointError, match="2 parameter group"):
        load_checkpoint(tmp_path / "c.npz", other, optim.Adam(other.parameters()))
    np.testing.assert_array_equal(other[0].weight.data, make_model(seed=4)[0].weight.data)  # left untouched
    with pytest.raises(CheckpointError, match="no random generator 'x'"):
        load_checkpoint(tmp_path / "c.npz", model, rngs={"x": np.random.default_rng()})


def test_unsavable_content_is_refused(tmp_path):
    model = make_model()
    with pytest.raises(TypeError, match="no pickle"):
        save_checkpoint(tmp_path / "c.npz", model, extra={"f": lambda: 1})
    with pytest.raises(TypeError, match="pickle"):
        save_checkpoint(tmp_path / "c.npz", model, extra={"a": np.array([object()])})
    with pytest.raises(TypeError, match="state_dict"):
        save_checkpoint(tmp_path / "c.npz", model, loaders=[1, 2, 3])
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model = make_model()
    save_checkpoint(tmp_path / "c.npz", model, epoch=1)
    real_savez = np.savez

    def crash(file, **arrays):
        real_savez(file, **dict(list(arrays.items())[:2]))  # half written ...
        raise OSError("disk full")                          # ... then the write fails

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c.npz", model, epoch=2)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind
    assert load_checkpoint(tmp_path / "c.npz", make_model()).epoch == 1
