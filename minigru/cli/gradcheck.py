"""``minigru gradcheck``: every layer and model against centred finite differences, in float64.

Each entry builds a small float64 module and inputs, and
:func:`minigru.gradcheck.check_module` compares the hand-written backward
pass with numerical gradients for every input and parameter (docs/derivations.md
eqs. G1, G2). The sizes are tiny so that the whole table takes about a second,
and tests/test_gradcheck.py runs it over 100 seeds. The finite-difference step
is 1e-5 (as in the layer tests): in float64 its truncation error O(eps²) and
rounding error O(1e-16/eps) are both ~1e-11 of the checked sum.
"""
from __future__ import annotations

import time

import numpy as np

from .. import nn
from ..gradcheck import check_module
from ..models import CNNGRU, ConvGRUPredictor, ImageToSequence, ReNet, RowGRU, SeedCNN
from .common import CLIError

__all__ = ["cmd_gradcheck", "gradcheck_cases"]

F64 = np.float64


class _AgainstTarget(nn.Module):
    """A regression loss with its target fixed, so that check_module varies only the prediction.

    Like torch's losses, MSELoss and BCEWithLogitsLoss return the gradient of
    the prediction alone (tests/test_regression_loss.py checks the target's).
    """

    def __init__(self, loss, target):
        super().__init__()
        self.loss, self.target = loss, target

    def forward(self, prediction):
        return self.loss(prediction, self.target)

    def backward(self, dout=1.0):
        return self.loss.backward(dout)


def gradcheck_cases():
    """``[(name, build)]``: ``build(rng)`` returns ``(module, inputs)`` in float64, ready for check_module."""
    def normal(rng, *shape):
        return rng.standard_normal(shape)

    def labels(rng, n, k):
        return rng.integers(0, k, size=n)

    def image_batch(rng):  # (N, C, H, W) with distinct values (no ties for max pooling)
        return rng.permutation(np.arange(2 * 2 * 5 * 5, dtype=F64)).reshape(2, 2, 5, 5) / 25.0 - 2.0

    def _fitted_whitening(x):  # filters from the batch itself; ε 0.1 keeps their gain (and round-off) small
        return nn.PatchWhitening(2, 2, eps=0.1, dtype=F64).fit(x), [x]

    def batch_norm(cls, channels, rng):  # random γ, β and running statistics: nothing trivially 0 or 1
        layer = cls(channels, dtype=F64)
        layer.weight.data[...] = rng.uniform(0.5, 1.5, channels)
        layer.bias.data[...] = rng.standard_normal(channels)
        layer.running_mean[...] = rng.standard_normal(channels)
        layer.running_var[...] = rng.uniform(0.5, 2.0, channels)
        return layer

    return [
        ("Linear", lambda r: (nn.Linear(4, 3, rng=r, dtype=F64), [normal(r, 2, 4)])),
        ("Linear (3-D input, no bias)", lambda r: (nn.Linear(4, 3, bias=False, rng=r, dtype=F64),
                                                   [normal(r, 2, 3, 4)])),
        ("ReLU", lambda r: (nn.ReLU(), [normal(r, 3, 4) + 0.05])),
        ("Tanh", lambda r: (nn.Tanh(), [normal(r, 3, 4)])),
        ("Sigmoid", lambda r: (nn.Sigmoid(), [normal(r, 3, 4)])),
        ("Softmax", lambda r: (nn.Softmax(dim=-1), [normal(r, 3, 4)])),
        ("Dropout(p=0.3)", lambda r: (nn.Dropout(0.3, rng=r), [normal(r, 3, 4)])),
        ("Flatten", lambda r: (nn.Flatten(), [normal(r, 2, 2, 2, 3)])),
        ("Conv2d 3x3 pad 1", lambda r: (nn.Conv2d(2, 3, 3, padding=1, rng=r, dtype=F64), [normal(r, 2, 2, 4, 4)])),
        ("Conv2d 3x2 stride 2", lambda r: (nn.Conv2d(2, 2, (3, 2), stride=2, rng=r, dtype=F64),
                                           [normal(r, 1, 2, 5, 6)])),
        ("PatchWhitening 2x2 (fixed filters)", lambda r: _fitted_whitening(normal(r, 2, 2, 4, 5))),
        ("MaxPool2d 2", lambda r: (nn.MaxPool2d(2), [image_batch(r)])),
        ("MaxPool2d 3 stride 2 pad 1", lambda r: (nn.MaxPool2d(3, stride=2, padding=1), [image_batch(r)])),
        ("AvgPool2d 2", lambda r: (nn.AvgPool2d(2), [normal(r, 2, 2, 4, 4)])),
        ("AdaptiveAvgPool2d 1", lambda r: (nn.AdaptiveAvgPool2d(1), [normal(r, 2, 2, 3, 3)])),
        ("BatchNorm1d (train)", lambda r: (batch_norm(nn.BatchNorm1d, 4, r), [2 * normal(r, 3, 4, 5) + 0.5])),
        ("BatchNorm2d (train)", lambda r: (batch_norm(nn.BatchNorm2d, 3, r), [2 * normal(r, 3, 3, 3, 2) + 0.5])),
        ("BatchNorm2d (eval)", lambda r: (batch_norm(nn.BatchNorm2d, 3, r).eval(),
                                          [2 * normal(r, 3, 3, 3, 2) + 0.5])),
        ("CrossEntropyLoss", lambda r: (nn.CrossEntropyLoss(), [normal(r, 4, 5), labels(r, 4, 5)])),
        ("CrossEntropyLoss (label smoothing 0.1)",
         lambda r: (nn.CrossEntropyLoss(label_smoothing=0.1), [normal(r, 4, 5), labels(r, 4, 5)])),
        ("RNN tanh", lambda r: (nn.RNN(3, 4, rng=r, dtype=F64), [normal(r, 3, 2, 3), normal(r, 1, 2, 4)])),
        ("RNNCell relu", lambda r: (nn.RNNCell(3, 4, nonlinearity="relu", rng=r, dtype=F64),
                                    [normal(r, 2, 3), normal(r, 2, 4)])),
        ("GRU (reset after, PyTorch)", lambda r: (nn.GRU(3, 4, rng=r, dtype=F64),
                                                  [normal(r, 3, 2, 3), normal(r, 1, 2, 4)])),
        ("GRU (reset before, Cho et al.)", lambda r: (nn.GRU(3, 4, reset_after=False, rng=r, dtype=F64),
                                                      [normal(r, 3, 2, 3), normal(r, 1, 2, 4)])),
        ("GRU 2 layers bidirectional", lambda r: (nn.GRU(2, 2, num_layers=2, bidirectional=True, rng=r,
                                                         dtype=F64), [normal(r, 3, 2, 2), None])),
        ("GRUCell", lambda r: (nn.GRUCell(3, 4, rng=r, dtype=F64), [normal(r, 2, 3), normal(r, 2, 4)])),
        ("LSTM", lambda r: (nn.LSTM(3, 4, rng=r, dtype=F64), [normal(r, 3, 2, 3), None])),
        ("LSTMCell", lambda r: (nn.LSTMCell(3, 4, rng=r, dtype=F64), [normal(r, 2, 3), None])),
        ("MSELoss", lambda r: (_AgainstTarget(nn.MSELoss(), normal(r, 3, 4)), [normal(r, 3, 4)])),
        ("BCEWithLogitsLoss (pos_weight)",
         lambda r: (_AgainstTarget(nn.BCEWithLogitsLoss(pos_weight=r.uniform(0.5, 2.0, 4)), r.uniform(0, 1, (3, 4))),
                    [normal(r, 3, 4)])),
        ("ConvGRU (reset before, Ballas et al.)",
         lambda r: (nn.ConvGRU(1, 2, 3, rng=r, dtype=F64), [normal(r, 2, 2, 1, 3, 4), normal(r, 1, 2, 2, 3, 4)])),
        ("ConvGRU (reset after, stride-free, 2 layers)",
         lambda r: (nn.ConvGRU(2, 2, (3, 1), num_layers=2, reset_after=True, rng=r, dtype=F64),
                    [normal(r, 2, 1, 2, 3, 4), None])),
        ("ReNetLayer 2x2 patches", lambda r: (nn.ReNetLayer(2, 1, patch_size=2, rng=r, dtype=F64),
                                              [normal(r, 1, 2, 4, 4)])),
        ("ImageToSequence (columns)", lambda r: (ImageToSequence("columns"), [normal(r, 2, 3, 2, 4)])),
        ("ImageToSequence (rows)", lambda r: (ImageToSequence("rows"), [normal(r, 2, 3, 2, 4)])),
        ("SeedCNN (tiny)", lambda r: (SeedCNN(num_classes=3, in_channels=2, image_size=4, widths=(2, 3),
                                              hidden=(4,), rng=r, dtype=F64), [normal(r, 2, 2, 4, 4)])),
        ("CNNGRU (tiny, batch norm, bidirectional)",
         lambda r: (CNNGRU(num_classes=3, in_channels=1, image_size=(4, 8), widths=(2, 2), batch_norm=True,
                           hidden_size=2, bidirectional=True, rng=r, dtype=F64), [normal(r, 2, 1, 4, 8)])),
        ("CNNGRU (tiny, mean readout, dropout)",
         lambda r: (CNNGRU(num_classes=3, in_channels=1, image_size=4, widths=(2,), hidden_size=3,
                           readout="mean", dropout=0.3, rng=r, dtype=F64), [normal(r, 2, 1, 4, 4)])),
        ("RowGRU (tiny)", lambda r: (RowGRU(num_classes=3, in_channels=2, image_size=(3, 4), hidden_size=3,
                                            rng=r, dtype=F64), [normal(r, 2, 2, 3, 4)])),
        ("ReNet (tiny)", lambda r: (ReNet(num_classes=2, in_channels=1, image_size=4, hidden_sizes=(1,),
                                          patch_sizes=(2,), rng=r, dtype=F64),
                                    [normal(r, 2, 1, 4, 4)])),
        # default weights: gradient entries of ~1e-7 next to ~1e-1, judged against the noise floor (eq. G2)
        ("ConvGRUPredictor (tiny)", lambda r: (ConvGRUPredictor(
            in_channels=1, hidden_channels=1, encoder_channels=1, logits=True, rng=r, dtype=F64),
            [r.uniform(0.0, 1.0, (1, 3, 1, 3, 3))])),
    ]


def cmd_gradcheck(args) -> int:
    """Print one table per entry and a summary; exit status 1 if any entry fails."""
    if not args.eps > 0 or not args.tol >= 0:
        raise CLIError(f"--eps must be positive and --tol non-negative, got --eps {args.eps} --tol {args.tol}")
    cases = [(name, build) for name, build in gradcheck_cases()
             if args.only is None or args.only.lower() in name.lower()]
    if not cases:
        raise CLIError(f"no entry matches --only {args.only!r} (`minigru gradcheck` without --only lists them all)")
    started = time.perf_counter()
    failed, worst = [], 0.0
    for name, build in cases:
        module, inputs = build(np.random.default_rng(0))
        report = check_module(module, *inputs, eps=args.eps, tol=args.tol, verbose=False, title=name)
        print(report, end="\n\n", flush=True)
        worst = max(worst, report.max_rel_error)
        if not report.passed:
            failed.append(name)
    seconds = time.perf_counter() - started
    print(f"{len(cases) - len(failed)}/{len(cases)} passed (tolerance {args.tol:.0e}), largest error "
          f"{worst:.2e}, {seconds:.1f}s")
    if failed:
        print("FAILED: " + ", ".join(failed))
        return 1
    return 0
