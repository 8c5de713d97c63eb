"""The CuPy path without a GPU: the install check, host syncs per step and per pass, explicit transfers.

Run on the strict CuPy stand-in (tests/_strict_cupy.py), which counts host
syncs and refuses the implicit conversions CuPy refuses.
"""
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minigru import backend, interop, nn, optim
from minigru.data import DataLoader
from minigru.models import CNNGRU, RowGRU
from minigru.train import Accuracy, Trainer, confusion_matrix
from conftest import cupy_stand_in

CLASSES = 5


# ------------------------------------------------------------------ item 1: the install check
class _BrokenArray:
    """Arrays of a CuPy whose CUDA libraries are missing: creating works, the first kernel fails."""

    def __init__(self, failing):
        self.failing = failing
        self.T = self

    def _fail(self, op):
        error, message = self.failing.get(op, (None, None))
        if error is not None:
            raise error(message)
        return self

    def __mul__(self, other):
        return self._fail("elementwise")

    def __add__(self, other):
        return self._fail("elementwise")

    def __matmul__(self, other):
        return self._fail("matmul")

    def sum(self):
        return self


def _fake_cupy(failing):
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    fake.asarray = lambda a: _BrokenArray(failing)
    fake.asnumpy = lambda a: np.asarray(0.0)
    return fake


@pytest.mark.parametrize("failing", [
    {"elementwise": (RuntimeError, "CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open "
                                   "shared object file: No such file or directory")},
    {"matmul": (ImportError, "libcublas.so.12: cannot open shared object file: No such file or directory")},
], ids=["no-nvrtc", "no-cublas"])
def test_cupy_that_cannot_run_kernels_is_unavailable_with_the_fix(monkeypatch, failing):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(failing))
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_stand_in", None)
    assert not backend.cupy_available()
    with pytest.raises(backend.BackendUnavailableError) as info:
        backend.set_backend("cupy")
    message = str(info.value)
    assert "\n" not in message and "minigru[cuda12]" in message and "cannot run kernels" in message
    assert (failing.get("elementwise") or failing["matmul"])[1].split(":")[0] in message
    assert backend.get_backend() == "numpy"


def test_cupy_with_wrong_kernel_results_is_unavailable(monkeypatch):
    fake = _fake_cupy({})
    fake.asnumpy = lambda a: np.asarray(-1.0)   # a broken setup that computes garbage
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_stand_in", None)
    with pytest.raises(backend.BackendUnavailableError, match="self-test"):
        backend.get_xp("cupy")


def test_a_working_cupy_passes_the_check(monkeypatch, strict_cupy_backend):
    monkeypatch.setitem(sys.modules, "cupy", strict_cupy_backend)
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_stand_in", None)
    assert backend.cupy_available() and backend.get_xp("cupy") is strict_cupy_backend


def test_cuda_extras_bring_the_cuda_libraries():
    import tomllib
    with open("pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for extra, package in (("cuda12", "cupy-cuda12x"), ("cuda13", "cupy-cuda13x")):
        (requirement,) = extras[extra]
        # [ctk] pulls NVRTC, cuBLAS, ... from PyPI (CuPy >= 14 finds them there; 13.x needs a CUDA toolkit)
        assert requirement.startswith(f"{package}[ctk]>=14"), requirement


# ------------------------------------------------------------------ item 2: host syncs
def _model(kind, rng):
    if kind == "cnn":
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * 4 * 4, CLASSES, rng=rng))
    if kind == "rowgru":
        return RowGRU(num_classes=CLASSES, image_size=8, hidden_size=6, rng=rng)
    return CNNGRU(num_classes=CLASSES, image_size=8, widths=(4, 8), rng=rng)


def _batches(n_batches, seed=0, batch=6):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_batches * batch, 3, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, size=n_batches * batch)
    return DataLoader((images, labels), batch_size=batch)


@pytest.mark.parametrize("kind", ["cnn", "rowgru", "cnngru"])
@pytest.mark.parametrize("loss_kw", [{}, {"weight": np.linspace(0.5, 2.0, CLASSES, dtype=np.float32),
                                          "label_smoothing": 0.1}], ids=["plain", "weighted"])
def test_a_training_step_makes_one_host_sync(strict_cupy_backend, kind, loss_kw):
    rng = np.random.default_rng(0)
    model = _model(kind, rng)
    scheduler = None
    if kind == "cnn":
        optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=3)
    else:
        optimizer = (optim.Adam if kind == "rowgru" else optim.AdamW)(model.parameters(), lr=1e-3)
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(**loss_kw), scheduler=scheduler, clip_grad_norm=1.0,
                      progress=False)
    for x, y in _batches(3):
        strict_cupy_backend.counters.reset()
        accuracy = Accuracy().fresh()
        loss = trainer.train_step(x, y, [accuracy])
        correct = accuracy.correct
        assert strict_cupy_backend.counters.syncs == 1, "a step reads only its loss back"
        # Only dropout copies to the device: its uniforms are drawn on the host by design (backend.random_uniform),
        # so a seed gives the same masks on both backends.
        dropout_layers = sum(isinstance(m, nn.Dropout) for m in model.modules())
        assert strict_cupy_backend.counters.host_to_device == dropout_layers
        assert np.isfinite(loss) and backend.backend_of(correct) == "cupy"


@pytest.mark.parametrize("n_batches", [1, 4])
def test_an_evaluation_pass_syncs_a_fixed_number_of_times(strict_cupy_backend, n_batches):
    model = _model("cnn", np.random.default_rng(0))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), progress=False)
    batches = list(_batches(n_batches))
    strict_cupy_backend.counters.reset()
    result = trainer.evaluate(batches)
    assert strict_cupy_backend.counters.syncs == 2, "one read of the confusion matrix, one of the loss sum"
    assert result.confusion_matrix.sum() == 6 * n_batches


def test_the_loss_itself_never_syncs(strict_cupy_backend):
    xp = strict_cupy_backend
    logits = xp.asarray(np.random.default_rng(0).normal(size=(4, CLASSES)).astype(np.float32))
    targets = xp.asarray(np.array([0, 4, 2, 2]))
    weight = np.linspace(0.5, 2.0, CLASSES, dtype=np.float32)
    for reduction in ("mean", "sum", "none"):
        loss_fn = nn.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=0.2)
        strict_cupy_backend.counters.reset()
        loss = loss_fn(logits, targets)
        loss_fn.backward(xp.ones(4, dtype=np.float32) if reduction == "none" else 1.0)
        assert strict_cupy_backend.counters.syncs == 0, reduction
        assert backend.backend_of(loss) == "cupy"


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-3, CLASSES + 2), min_size=1, max_size=8))
def test_device_targets_out_of_range_are_loud(targets):
    """Targets outside [0, C-1] raise on the host and give NaN (never a wrapped index) on the device."""
    logits = np.random.default_rng(1).normal(size=(len(targets), CLASSES)).astype(np.float32)
    targets = np.array(targets)
    bad = (targets < 0) | (targets >= CLASSES)
    with cupy_stand_in() as xp, backend.use_backend("cupy"):
        loss_fn = nn.CrossEntropyLoss(reduction="none")
        per_sample = backend.to_numpy(loss_fn(xp.asarray(logits), xp.asarray(targets)))
        dlogits = backend.to_numpy(loss_fn.backward(xp.ones(len(targets), dtype=np.float32)))
    np.testing.assert_array_equal(np.isnan(per_sample), bad)
    np.testing.assert_array_equal(np.isnan(dlogits).any(axis=1), bad)
    if bad.any():
        with pytest.raises(ValueError, match="class indices"):
            nn.CrossEntropyLoss()(logits, targets)


def test_trainer_names_bad_device_labels(strict_cupy_backend):
    xp = strict_cupy_backend
    model = _model("cnn", np.random.default_rng(0))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), progress=False)
    x = xp.asarray(np.zeros((2, 3, 8, 8), dtype=np.float32))
    y = xp.asarray(np.array([1, CLASSES]))
    with pytest.raises(ValueError, match=rf"class indices in \[0, {CLASSES - 1}\].*from 1 to {CLASSES}"):
        trainer.train_step(x, y)
    with pytest.raises(ValueError, match="1 of 2 evaluation labels"):
        trainer.evaluate([(x, y)])


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30))
def test_device_confusion_matrix_counts_every_pair(pairs):
    y_true, y_pred = (np.array(v) for v in zip(*pairs))
    expected = np.zeros((4, 4), dtype=np.int64)
    for t, p in pairs:
        expected[t, p] += 1
    with cupy_stand_in() as xp:
        for check in (True, False):
            cm = confusion_matrix(xp.asarray(y_true), xp.asarray(y_pred), 4, check=check)
            assert backend.backend_of(cm) == "cupy" and cm.dtype == np.int64
            np.testing.assert_array_equal(backend.to_numpy(cm), expected)


# ------------------------------------------------------------------ item 3: explicit transfers
class _DeviceLabelDataset:
    """A dataset whose labels are 0-d device arrays (e.g. computed on the GPU)."""

    def __init__(self, xp, n=7):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, size=(n, 3, 4, 4), dtype=np.uint8)
        self.labels = rng.integers(0, CLASSES, size=n)
        self.xp = xp

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.xp.asarray(self.images[i]), self.xp.asarray(self.labels[i])


def test_dataset_with_device_labels_batches(backend_name, xp):
    data = _DeviceLabelDataset(xp)
    batches = list(DataLoader(data, batch_size=3))
    labels = np.concatenate([backend.to_numpy(y) for _, y in batches])
    np.testing.assert_array_equal(labels, data.labels)
    assert all(backend.backend_of(y) == backend_name and y.dtype == np.int64 for _, y in batches)


def test_to_numpy_of_lists_of_device_arrays(backend_name, xp):
    parts = [xp.asarray(np.array([1.0, 2.0])), xp.asarray(np.array([3.0, 4.0]))]
    np.testing.assert_array_equal(backend.to_numpy(parts), [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(backend.to_numpy((xp.asarray(np.array(5)), 6)), [5, 6])
    np.testing.assert_array_equal(backend.to_numpy([1, 2.5]), [1.0, 2.5])


def test_state_dict_of_device_arrays_imports(backend_name, xp):
    source = nn.Linear(3, 2, rng=np.random.default_rng(0))
    target = nn.Linear(3, 2, rng=np.random.default_rng(1))
    state = OrderedDict((k, xp.asarray(backend.to_numpy(v))) for k, v in source.state_dict().items())
    interop.from_torch_state_dict(target, state)
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(target.state_dict()[key]), backend.to_numpy(value))
        assert backend.backend_of(target.state_dict()[key]) == backend_name


# ------------------------------------------------------------------ item 4: scatter_add
def test_scatter_add_accumulates_repeated_indices(backend_name, xp):
    indices = np.array([0, 2, 2, 3, 0, 0])
    values = np.arange(1.0, 7.0, dtype=np.float32)
    expected = np.zeros(4, dtype=np.float32)
    for i, v in zip(indices, values):
        expected[i] += v
    target = xp.zeros(4, dtype=np.float32)
    backend.scatter_add(target, xp.asarray(indices), xp.asarray(values))
    np.testing.assert_array_equal(backend.to_numpy(target), expected)


# ------------------------------------------------------------------ the CLI flows on the stand-in
def test_cli_train_and_evaluate_run_on_the_cupy_stand_in(tmp_path, capsys, strict_cupy_backend):
    from minigru import cli
    from test_cli import TINY
    out = tmp_path / "gpu"
    assert cli.main(["train", *TINY, "--epochs", "2", "--backend", "cupy", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    assert "final test accuracy" in capsys.readouterr().out
    strict_cupy_backend.counters.reset()
    assert cli.main(["evaluate", str(out / "checkpoint.npz"), "--backend", "cupy"]) == 0, capsys.readouterr().err
    assert "per-class accuracy" in capsys.readouterr().out
    # one evaluation pass over the test set: each of its two scores (with the recipe's mirror averaging and,
    # from the same pass, without it) reads its confusion matrix and summed loss back once
    assert strict_cupy_backend.counters.syncs == 4
