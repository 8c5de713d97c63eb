"""The Trainer beyond classification (the metrics hook), test-time augmentation views, evaluation progress."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigru import nn, optim
from minigru.data import DataLoader, HorizontalFlip, Identity, Translate, tta_views
from minigru.train import Accuracy, EvalResult, History, Metric, Trainer, evaluate


class CountingModel(nn.Module):
    """A fixed linear classifier of (N, C, H, W) images that counts its forward passes."""

    def __init__(self, shape, classes=3, seed=0):
        super().__init__()
        self.weight = np.random.default_rng(seed).standard_normal((classes, int(np.prod(shape))))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.reshape(len(x), -1) @ self.weight.T


def images(n=10, shape=(2, 4, 5), seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape), rng.integers(0, 3, n)


# ------------------------------------------------------------------ TTA
def test_tta_averages_the_views_and_keeps_the_plain_score_from_the_same_pass():
    x, y = images()
    model = CountingModel(x.shape[1:])
    loader = DataLoader((x, y), batch_size=4, dtype=np.float64)
    views, weights = tta_views("flip")
    result = evaluate(model, loader, nn.CrossEntropyLoss(), tta=views, tta_weights=weights)
    assert model.calls == 2 * len(loader)                # two views, two passes: the plain score comes free
    plain = evaluate(model, loader, nn.CrossEntropyLoss())
    assert result.plain.loss == pytest.approx(plain.loss, rel=1e-12)
    assert result.plain.accuracy == plain.accuracy
    averaged = 0.5 * (x.reshape(10, -1) @ model.weight.T + x[..., ::-1].reshape(10, -1) @ model.weight.T)
    assert result.accuracy == np.mean(averaged.argmax(1) == y)
    shifted = averaged - averaged.max(1, keepdims=True)
    expected_loss = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(10), y])
    assert result.loss == pytest.approx(expected_loss, rel=1e-10)
    np.testing.assert_array_equal(result.confusion_matrix.sum(1), np.bincount(y, minlength=3))


def test_tta_weights_are_normalised_and_a_single_identity_view_is_the_plain_score():
    x, y = images()
    model = CountingModel(x.shape[1:])
    loader = DataLoader((x, y), batch_size=5, dtype=np.float64)
    base = evaluate(model, loader, nn.CrossEntropyLoss())
    alone = evaluate(model, loader, nn.CrossEntropyLoss(), tta=[Identity()], tta_weights=[3.0])
    assert alone.loss == pytest.approx(base.loss, rel=1e-12) and alone.plain.loss == pytest.approx(base.loss)
    with pytest.raises(ValueError, match="tta_weights"):
        evaluate(model, loader, nn.CrossEntropyLoss(), tta=[Identity(), HorizontalFlip()], tta_weights=[1.0])
    with pytest.raises(TypeError, match="views"):
        evaluate(model, loader, nn.CrossEntropyLoss(), tta=[])


def test_flip_translate_is_airbenchs_weighting():
    views, weights = tta_views("flip-translate")
    assert len(views) == 6 and isinstance(views[0], Identity)
    total = sum(weights)
    assert [w / total for w in weights] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    with pytest.raises(ValueError, match="choose one of"):
        tta_views("rotate")


@settings(max_examples=40, deadline=None)
@given(h=st.integers(3, 7), w=st.integers(3, 7), dy=st.integers(-2, 2), dx=st.integers(-2, 2),
       seed=st.integers(0, 2**16))
def test_translate_moves_content_and_reflects_the_border(h, w, dy, dx, seed):
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w))
    if max(abs(dy), abs(dx)) >= min(h, w):
        with pytest.raises(ValueError, match="larger than"):
            Translate(dy, dx)(x)
        return
    out = Translate(dy, dx)(x)

    def reflect(i, n):  # torch's 'reflect': ... 2 1 | 0 1 2 ... n-1 | n-2 ...
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    for i in range(h):
        for j in range(w):
            np.testing.assert_array_equal(out[:, :, i, j], x[:, :, reflect(i - dy, h), reflect(j - dx, w)])


# ------------------------------------------------------------------ the metrics hook
class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2, rng=0, dtype=np.float64)

    def forward(self, x):
        return self.linear(x)

    def backward(self, dout):
        return self.linear.backward(dout)


class MeanAbsoluteError(Metric):
    name = "mae"
    higher_is_better = False

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, outputs, targets):
        self.total += float(np.abs(outputs - targets).sum())
        self.count += targets.size

    def result(self):
        return self.total / self.count


def regression_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    return x, x @ np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])


@pytest.mark.parametrize("metrics", [None, "mae"])
def test_a_regression_model_trains_without_classification_metrics(metrics):
    x, t = regression_data()
    model = Regressor()
    hook, monitor = (None, None) if metrics is None else ([MeanAbsoluteError()], "val_mae")
    trainer = Trainer(model, optim.Adam(model.parameters(), lr=0.1), nn.MSELoss(), metrics=hook, monitor=monitor,
                      progress=False)
    train = DataLoader((x, t), batch_size=16, shuffle=True, seed=0, dtype=np.float64)
    val = DataLoader(regression_data(32, seed=1), batch_size=16, dtype=np.float64)
    history = trainer.fit(train, 12, val)
    assert history.train_loss[-1] < 0.2 * history.train_loss[0]
    assert history.train_accuracy == [None] * 12 and history.val_accuracy == [None] * 12
    result = trainer.evaluate(val)
    assert result.accuracy is None and result.confusion_matrix is None
    if metrics is None:
        assert trainer.monitor == "val_loss" and result.metrics == {}
    else:
        assert history.val_mae[-1] == pytest.approx(result.metrics["mae"]) and history.val_mae[-1] < history.val_mae[0]
        assert trainer.best_value == min(history.val_mae)       # lower is better for this metric
        restored = History.from_json(history.to_json())
        assert restored.val_mae == history.val_mae and "train_mae" in restored.fields


def test_metric_names_and_monitors_are_checked():
    model = Regressor()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="monitor must be one of"):
        Trainer(model, opt, nn.MSELoss(), metrics=None, monitor="val_accuracy")
    with pytest.raises(TypeError, match="Metric objects"):
        Trainer(model, opt, nn.MSELoss(), metrics=[len])
    with pytest.raises(ValueError, match="distinct"):
        Trainer(model, opt, nn.MSELoss(), metrics=[Accuracy(), Accuracy()])
    with pytest.raises(ValueError, match="unknown History field"):
        History().append(epoch=1, trian_loss=0.5)


def test_on_batch_end_sees_every_batch_loss():
    x, t = regression_data()
    model = Regressor()
    seen = []
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.05), nn.MSELoss(), metrics=None, progress=False,
                      on_batch_end=lambda tr, loss: seen.append(loss))
    history = trainer.fit(DataLoader((x, t), batch_size=16, dtype=np.float64), 2)
    assert len(seen) == 8 and history.train_loss[0] == pytest.approx(np.mean(seen[:4]))


# ------------------------------------------------------------------ progress
def test_evaluation_shows_progress_and_accuracy_as_a_percentage(capsys):
    pytest.importorskip("tqdm")
    x, y = images(12)
    model = CountingModel(x.shape[1:])
    result = evaluate(model, DataLoader((x, y), batch_size=4, dtype=np.float64), nn.CrossEntropyLoss(),
                      progress="text", description="test")
    err = capsys.readouterr().err
    assert "test: 100%" in err and "3/3" in err
    assert f"acc {100 * result.accuracy:.2f}%" in err
    assert isinstance(result, EvalResult) and result.samples == 12
