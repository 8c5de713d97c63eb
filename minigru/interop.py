"""PyTorch interoperability: state dicts both ways, and whole layers exported to / imported from torch.

minigru's layers have torch's class names, arguments, parameter names and
layouts, so their numbers move between the two libraries unchanged::

    from minigru import interop
    sd = interop.to_torch_state_dict(model)            # {name: torch.Tensor}, copies on the CPU
    interop.from_torch_state_dict(model, torch_sd)     # the reverse (shapes must match)
    twin = interop.export_to_torch(nn.Sequential(...)) # a torch.nn.Module computing the same function
    layer = interop.import_from_torch(torch.nn.GRU(3, 4))

``export_to_torch`` / ``import_from_torch`` cover the layers with an exact
torch twin: Linear, Conv2d, BatchNorm1d/2d, GRU/GRUCell (``reset_after=True``
only: torch has no reset-before GRU), LSTM/LSTMCell, RNN/RNNCell, ReLU, Tanh,
Sigmoid, Softmax, Dropout, Flatten, Identity, MaxPool2d, AvgPool2d,
AdaptiveAvgPool2d, the losses (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss),
and Sequential / ModuleList of those. Options that only torch has (dilation,
groups, ceil_mode, proj_size, ...) raise a ValueError on import unless they
have their default value.

Three minigru-only speed options have no torch argument: ``Conv2d(input_grad=False)`` exports as a
plain Conv2d (torch's autograd decides that by itself), so does ``Conv2d(algorithm=...)`` (torch's
backends choose their algorithm themselves; an imported Conv2d gets ``"auto"``), and a fused ``MaxPool2d(relu=True)`` (see
``nn.fuse_relu_maxpool``) exports as ``Sequential(MaxPool2d, ReLU)``, the same function.

**Whole models** (SeedCNN, CNNGRU, ReNet, ConvGRU, ...) have no torch class;
their state dicts still carry torch's names, so a torch module with the same
children loads them. For example a SeedCNN ``m`` (features, then classifier)::

    twin = torch.nn.Sequential(collections.OrderedDict(
        features=interop.export_to_torch(m.features),
        classifier=interop.export_to_torch(m.classifier)))       # same keys, same forward

and a CNNGRU ``m`` with readout "final" and a unidirectional GRU::

    class TorchCNNGRU(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.features = interop.export_to_torch(m.features)
            self.gru = interop.export_to_torch(m.gru)
            self.fc = interop.export_to_torch(m.fc)
        def forward(self, x):
            f = self.features(x)                                          # (N, C, H, W)
            seq = f.permute(3, 0, 1, 2).reshape(f.shape[3], f.shape[0], -1)   # columns: (W, N, C*H)
            _, h_n = self.gru(seq)
            return self.fc(h_n[-1])

    twin = TorchCNNGRU(m); twin.load_state_dict(interop.to_torch_state_dict(m))

(tests/test_interop.py runs both recipes.) torch is imported only when a
function here needs it, with a clear error if it is missing; minigru itself
never imports torch.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import backend, nn

__all__ = ["to_torch_state_dict", "from_torch_state_dict", "load_torch_state_dict", "export_to_torch",
           "import_from_torch"]


def _torch():
    try:
        import torch  # noqa: PLC0415  (optional dependency, only for interop)
    except ImportError as err:
        raise ImportError("minigru.interop needs PyTorch, which is not installed; install it with "
                          "`pip install torch` (the CPU build is enough)") from err
    return torch


def _check_conventions(module, action, hint=", or pass check_conventions=False to move the raw arrays anyway"):
    for name, m in module.named_modules():
        if isinstance(m, (nn.GRU, nn.GRUCell)) and not m.reset_after:
            where = f" ({name!r})" if name else ""
            raise ValueError(f"cannot {action}: the {type(m).__name__}{where} has reset_after=False (Cho et al.'s "
                             "candidate), which torch does not implement; its weights would compute a different "
                             f"function in torch. Use reset_after=True{hint}")


def to_torch_state_dict(module, check_conventions: bool = True) -> "OrderedDict":
    """``module.state_dict()`` as CPU torch tensors (copies, same dtypes and torch's key names).

    With ``check_conventions`` a GRU with reset_after=False raises a ValueError (its
    numbers would mean something else in torch's GRU).
    """
    torch = _torch()
    if check_conventions:
        _check_conventions(module, "export this state dict to torch")
    return OrderedDict((k, torch.from_numpy(np.array(backend.to_numpy(v), copy=True)))
                       for k, v in module.state_dict().items())


def from_torch_state_dict(module, torch_state_dict, strict: bool = True, check_conventions: bool = True):
    """Copy a torch ``state_dict`` (tensors on any device) into ``module``'s parameters and buffers.

    Values are cast to each target's dtype and moved to its backend; shapes must
    match; with ``strict`` missing or unexpected keys raise a KeyError. Returns
    ``(missing_keys, unexpected_keys)`` like torch.
    """
    if check_conventions:
        _check_conventions(module, "load a torch state dict")
    arrays = OrderedDict()
    for key, value in torch_state_dict.items():
        if hasattr(value, "detach"):
            arrays[key] = value.detach().cpu().numpy()
        else:  # NumPy and CuPy arrays go to load_state_dict as they are (CuPy refuses np.asarray of its arrays)
            arrays[key] = value if backend.is_array(value) else np.asarray(value)
    return module.load_state_dict(arrays, strict=strict)


load_torch_state_dict = from_torch_state_dict


# ---------------------------------------------------------------------------------- export
def _param_dtype(module):
    for p in module.parameters():
        return p.dtype
    return None


def _torch_dtype(torch, dtype):
    if dtype is None:
        return None
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
            np.dtype(np.float16): torch.float16}[np.dtype(dtype)]


def _recurrent_kwargs(m):
    kwargs = dict(input_size=m.input_size, hidden_size=m.hidden_size, bias=m.bias)
    if isinstance(m, nn.rnn.RNNBase):
        kwargs.update(num_layers=m.num_layers, batch_first=m.batch_first, dropout=m.dropout,
                      bidirectional=m.bidirectional)
    if isinstance(m, (nn.RNN, nn.RNNCell)):
        kwargs["nonlinearity"] = m.nonlinearity
    return kwargs


def _export_one(torch, m):
    """A fresh torch module with m's class and arguments (weights loaded later), or None if m has no twin."""
    tnn = torch.nn
    dtype = _torch_dtype(torch, _param_dtype(m))
    if isinstance(m, nn.Sequential):
        return tnn.Sequential(OrderedDict((name, _export_tree(torch, child)) for name, child in m.named_children()))
    if isinstance(m, nn.ModuleList):
        return tnn.ModuleList([_export_tree(torch, child) for child in m])
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
    if isinstance(m, nn.Conv2d):
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                          bias=m.bias is not None, dtype=dtype)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else tnn.BatchNorm2d
        if dtype is None and m.running_mean is not None:
            dtype = _torch_dtype(torch, m.running_mean.dtype)
        return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats, dtype=dtype)
    for ours, theirs in ((nn.GRU, tnn.GRU), (nn.GRUCell, tnn.GRUCell), (nn.LSTM, tnn.LSTM),
                         (nn.LSTMCell, tnn.LSTMCell), (nn.RNN, tnn.RNN), (nn.RNNCell, tnn.RNNCell)):
        if type(m) is ours:
            return theirs(**_recurrent_kwargs(m), dtype=dtype)
    simple = {nn.ReLU: tnn.ReLU, nn.Tanh: tnn.Tanh, nn.Sigmoid: tnn.Sigmoid, nn.Identity: tnn.Identity}
    if type(m) in simple:
        return simple[type(m)]()
    if isinstance(m, nn.Softmax):
        return tnn.Softmax(dim=m.dim)
    if isinstance(m, nn.Dropout):
        return tnn.Dropout(p=m.p)
    if isinstance(m, nn.Flatten):
        return tnn.Flatten(m.start_dim, m.end_dim)
    if isinstance(m, nn.MaxPool2d):
        pool = tnn.MaxPool2d(m.kernel_size, stride=m.stride, padding=m.padding)
        # minigru's fused MaxPool2d(relu=True) is max(pool(x), 0); torch needs the ReLU as its own layer
        return tnn.Sequential(pool, tnn.ReLU()) if getattr(m, "relu", False) else pool
    if isinstance(m, nn.AvgPool2d):
        return tnn.AvgPool2d(m.kernel_size, stride=m.stride, padding=m.padding)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(m.output_size)
    if isinstance(m, nn.CrossEntropyLoss):
        return tnn.CrossEntropyLoss(weight=_tensor(torch, m.weight), reduction=m.reduction,
                                    label_smoothing=m.label_smoothing)
    if isinstance(m, nn.MSELoss):
        return tnn.MSELoss(reduction=m.reduction)
    if isinstance(m, nn.BCEWithLogitsLoss):
        return tnn.BCEWithLogitsLoss(weight=_tensor(torch, m.weight), reduction=m.reduction,
                                     pos_weight=_tensor(torch, m.pos_weight))
    return None


def _tensor(torch, array):
    return None if array is None else torch.from_numpy(np.array(backend.to_numpy(array), copy=True))


def _export_tree(torch, m):
    twin = _export_one(torch, m)
    if twin is None:
        raise TypeError(f"export_to_torch: {type(m).__name__} has no torch twin. Export its numbers with "
                        f"to_torch_state_dict(module) and load them into a torch module with the same children "
                        f"(see the minigru.interop docstring for SeedCNN and CNNGRU)")
    return twin


def export_to_torch(module):
    """A ``torch.nn.Module`` with ``module``'s class, arguments, weights, buffers and train/eval mode.

    Its forward computes the same function (tests check it in float64). Raises a
    TypeError for a layer without a torch twin and a ValueError for a GRU with
    reset_after=False.
    """
    torch = _torch()
    _check_conventions(module, "export to torch", hint="")
    twin = _export_tree(torch, module)
    state = to_torch_state_dict(module, check_conventions=False)
    if state:
        twin.load_state_dict(state, strict=True)
    return twin.train(module.training)


# ---------------------------------------------------------------------------------- import
def _require(tm, **defaults):
    """A ValueError if a torch-only option of ``tm`` differs from its default (which minigru implements)."""
    for name, expected in defaults.items():
        value = getattr(tm, name)
        if isinstance(expected, int) and not isinstance(expected, bool) and isinstance(value, tuple):
            value = value[0] if len(set(value)) == 1 else value        # dilation=(1, 1) is dilation=1
        if value != expected:
            raise ValueError(f"import_from_torch: {type(tm).__name__} with {name}={value!r} has no minigru twin "
                             f"(minigru implements {name}={expected!r} only)")


def _numpy_dtype(tm):
    for p in list(tm.parameters(recurse=False)) + list(tm.buffers(recurse=False)):
        if p.is_floating_point():
            return np.dtype(str(p.dtype).replace("torch.", ""))
    return None


def _import_one(torch, tm, rng):
    tnn = torch.nn
    dtype = _numpy_dtype(tm)
    if isinstance(tm, tnn.Sequential):
        return nn.Sequential(*[_import_tree(torch, child, rng) for child in tm])
    if isinstance(tm, tnn.ModuleList):
        return nn.ModuleList([_import_tree(torch, child, rng) for child in tm])
    if type(tm) is tnn.Linear:
        return nn.Linear(tm.in_features, tm.out_features, bias=tm.bias is not None, rng=rng, dtype=dtype)
    if type(tm) is tnn.Conv2d:
        _require(tm, dilation=1, groups=1, padding_mode="zeros")
        return nn.Conv2d(tm.in_channels, tm.out_channels, tm.kernel_size, stride=tm.stride, padding=tm.padding,
                         bias=tm.bias is not None, rng=rng, dtype=dtype)
    if type(tm) in (tnn.BatchNorm1d, tnn.BatchNorm2d):
        cls = nn.BatchNorm1d if type(tm) is tnn.BatchNorm1d else nn.BatchNorm2d
        return cls(tm.num_features, eps=tm.eps, momentum=tm.momentum, affine=tm.affine,
                   track_running_stats=tm.track_running_stats, dtype=dtype)
    recurrent = {tnn.GRU: nn.GRU, tnn.LSTM: nn.LSTM, tnn.RNN: nn.RNN, tnn.GRUCell: nn.GRUCell,
                 tnn.LSTMCell: nn.LSTMCell, tnn.RNNCell: nn.RNNCell}
    if type(tm) in recurrent:
        kwargs = dict(input_size=tm.input_size, hidden_size=tm.hidden_size, bias=tm.bias, rng=rng, dtype=dtype)
        if isinstance(tm, tnn.RNNBase):
            if type(tm) is tnn.LSTM:
                _require(tm, proj_size=0)
            kwargs.update(num_layers=tm.num_layers, batch_first=tm.batch_first, dropout=tm.dropout,
                          bidirectional=tm.bidirectional)
        if type(tm) in (tnn.RNN, tnn.RNNCell):
            kwargs["nonlinearity"] = tm.nonlinearity
        return recurrent[type(tm)](**kwargs)
    simple = {tnn.ReLU: nn.ReLU, tnn.Tanh: nn.Tanh, tnn.Sigmoid: nn.Sigmoid, tnn.Identity: nn.Identity}
    if type(tm) in simple:
        return simple[type(tm)]()
    if type(tm) is tnn.Softmax:
        if tm.dim is None:
            raise ValueError("import_from_torch: Softmax(dim=None) is ambiguous; give torch's Softmax a dim")
        return nn.Softmax(dim=tm.dim)
    if type(tm) is tnn.Dropout:
        return nn.Dropout(tm.p, rng=rng)
    if type(tm) is tnn.Flatten:
        return nn.Flatten(tm.start_dim, tm.end_dim)
    if type(tm) is tnn.MaxPool2d:
        _require(tm, dilation=1, ceil_mode=False, return_indices=False)
        return nn.MaxPool2d(tm.kernel_size, stride=tm.stride, padding=tm.padding)
    if type(tm) is tnn.AvgPool2d:
        _require(tm, ceil_mode=False, count_include_pad=True, divisor_override=None)
        return nn.AvgPool2d(tm.kernel_size, stride=tm.stride, padding=tm.padding)
    if type(tm) is tnn.AdaptiveAvgPool2d:
        return nn.AdaptiveAvgPool2d(tm.output_size)
    if type(tm) is tnn.CrossEntropyLoss:
        _require(tm, ignore_index=-100)
        return nn.CrossEntropyLoss(_array(tm.weight), reduction=tm.reduction, label_smoothing=tm.label_smoothing)
    if type(tm) is tnn.MSELoss:
        return nn.MSELoss(reduction=tm.reduction)
    if type(tm) is tnn.BCEWithLogitsLoss:
        return nn.BCEWithLogitsLoss(_array(tm.weight), reduction=tm.reduction, pos_weight=_array(tm.pos_weight))
    return None


def _array(tensor):
    return None if tensor is None else tensor.detach().cpu().numpy().copy()


def _import_tree(torch, tm, rng):
    layer = _import_one(torch, tm, rng)
    if layer is None:
        raise TypeError(f"import_from_torch: torch.nn.{type(tm).__name__} has no minigru twin (supported: Linear, "
                        f"Conv2d, BatchNorm1d/2d, GRU, LSTM, RNN and their cells, activations, Dropout, Flatten, "
                        f"Identity, pooling, losses, Sequential, ModuleList)")
    return layer


def import_from_torch(torch_module, *, rng=None):
    """A minigru module with ``torch_module``'s class, arguments, weights, buffers and train/eval mode.

    Parameters are created on the current backend in the torch module's dtype;
    ``rng`` (Generator or seed) drives the Dropout masks. Raises a TypeError for
    a torch layer without a minigru twin and a ValueError for torch-only
    options (dilation, groups, ceil_mode, proj_size, ...).
    """
    torch = _torch()
    rng = backend.make_rng(rng)
    layer = _import_tree(torch, torch_module, rng)
    state = torch_module.state_dict()
    if state:
        from_torch_state_dict(layer, state, strict=True, check_conventions=False)
    return layer.train(torch_module.training)
