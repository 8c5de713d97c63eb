"""Write tests/golden/models.npz: PyTorch's numbers for whole minigru models (tests run without torch).

Run from the repository root with torch installed (CPU is enough)::

    python tests/golden/make_models.py

For each case a tiny float64 minigru model is built from a seed; its
``state_dict`` is loaded into a torch twin built from ``torch.nn`` layers
(:func:`torch_twin`), and torch computes logits, the input gradient and every
parameter gradient (autograd) for a seeded input and upstream gradient.
Keys are ``"<case>.<name>"``: ``x``, ``dlogits``, ``logits``, ``dx``,
``state.<param>`` (the weights used), ``grad.<param>`` (torch's gradients),
``running.<buffer>`` (batch-norm statistics after the step), and ``config``
(the model's class and arguments as JSON). The tests read the file with
``np.load(path, allow_pickle=False)``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from minigru import nn as mnn  # noqa: E402
from minigru.models import CNNGRU, RowGRU, SeedCNN  # noqa: E402

OUT = Path(__file__).with_name("models.npz")

CASES = {
    "cnngru_bn_bidirectional": (CNNGRU, dict(num_classes=3, in_channels=2, image_size=(4, 8), widths=[3, 4],
                                             batch_norm=True, hidden_size=5, bidirectional=True)),
    "cnngru_two_layers_mean": (CNNGRU, dict(num_classes=4, in_channels=3, image_size=8, widths=[3],
                                            convs_per_block=2, hidden_size=4, num_layers=2, readout="mean")),
    "seed_cnn": (SeedCNN, dict(num_classes=3, in_channels=2, image_size=(4, 6), widths=[3, 2], hidden=[5, 4])),
    "row_gru_bidirectional": (RowGRU, dict(num_classes=3, in_channels=2, image_size=(5, 3), hidden_size=4,
                                           bidirectional=True)),
}
BATCH = 3


def torch_layer(layer):
    """The torch.nn twin of one minigru layer (same arguments; weights are loaded later)."""
    if isinstance(layer, mnn.Sequential):
        return torch.nn.Sequential(*[torch_layer(m) for m in layer])
    if isinstance(layer, mnn.Conv2d):
        return torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                               layer.padding, bias=layer.bias is not None)
    if isinstance(layer, mnn.BatchNorm2d):
        return torch.nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, mnn.Linear):
        return torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if isinstance(layer, mnn.GRU):
        return torch.nn.GRU(layer.input_size, layer.hidden_size, layer.num_layers, bidirectional=layer.bidirectional)
    simple = {mnn.ReLU: torch.nn.ReLU, mnn.Flatten: torch.nn.Flatten, mnn.Identity: torch.nn.Identity}
    if isinstance(layer, mnn.MaxPool2d):
        return torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, mnn.Dropout):
        return torch.nn.Dropout(layer.p)
    return simple[type(layer)]()


class TorchRecurrentClassifier(torch.nn.Module):
    """CNNGRU (with ``features``) or RowGRU (without) written with torch.nn layers."""

    def __init__(self, model):
        super().__init__()
        self.along = model.to_sequence.along
        self.readout = model.readout
        if hasattr(model, "features"):
            self.features = torch_layer(model.features)
        self.gru = torch_layer(model.gru)
        self.fc = torch_layer(model.fc)

    def forward(self, x):
        fmap = self.features(x) if hasattr(self, "features") else x
        n, c, h, w = fmap.shape
        if self.along == "columns":
            seq = fmap.permute(3, 0, 1, 2).reshape(w, n, c * h)
        else:
            seq = fmap.permute(2, 0, 1, 3).reshape(h, n, c * w)
        out, h_n = self.gru(seq)
        if self.readout == "mean":
            summary = out.mean(dim=0)
        elif self.gru.bidirectional:
            summary = torch.cat([h_n[-2], h_n[-1]], dim=1)
        else:
            summary = h_n[-1]
        return self.fc(summary)


class TorchSeedCNN(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.features = torch_layer(model.features)
        self.classifier = torch_layer(model.classifier)

    def forward(self, x):
        return self.classifier(self.features(x))


def torch_twin(model):
    """A float64 torch module computing the same function as the minigru ``model``, with its weights."""
    twin = TorchSeedCNN(model) if isinstance(model, SeedCNN) else TorchRecurrentClassifier(model)
    twin = twin.double()
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    twin.train(model.training)
    return twin


def main():
    rng = np.random.default_rng(20240618)
    data = {}
    for case, (cls, config) in CASES.items():
        model = cls(**config, rng=int(rng.integers(1 << 31)), dtype=np.float64)
        height, width = model.config["image_size"]
        x = rng.standard_normal((BATCH, config["in_channels"], height, width))
        dlogits = rng.standard_normal((BATCH, config["num_classes"]))
        twin = torch_twin(model)
        xt = torch.tensor(x, requires_grad=True)
        logits = twin(xt)
        logits.backward(torch.tensor(dlogits))
        data[f"{case}.config"] = np.array(json.dumps({"class": cls.__name__, "args": config}))
        data[f"{case}.x"], data[f"{case}.dlogits"] = x, dlogits
        data[f"{case}.logits"], data[f"{case}.dx"] = logits.detach().numpy(), xt.grad.numpy()
        for name, value in model.state_dict().items():
            data[f"{case}.state.{name}"] = np.array(value)
        for name, p in twin.named_parameters():
            data[f"{case}.grad.{name}"] = p.grad.numpy()
        for name, b in twin.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                data[f"{case}.running.{name}"] = b.numpy()
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB, {len(data)} arrays)")


if __name__ == "__main__":
    main()
