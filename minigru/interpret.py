"""Looking inside trained models: GRU gate activations, saliency maps, filters, hidden-state trajectories.

* :func:`record_gru_gates` — the reset gate r, update gate z, candidate n and
  state h of every step of every GRU (or ConvGRU) layer and direction, for a
  GRU or for a whole model containing GRUs.
* :func:`saliency_map` — |∂ score / ∂ pixel|, maximised over the colour
  channels, from the model's own hand-written backward pass.
* :func:`conv_filters` — a convolution's filters scaled to [0, 1] for display.
* :func:`hidden_state_trajectory` — the states of a sequence projected onto
  their 2 principal components (PCA by SVD).
* :func:`plot_filters`, :func:`plot_gates`, :func:`plot_saliency`,
  :func:`plot_trajectory` — matplotlib figures of the above (matplotlib is
  imported when a plot is made). With ``path`` the figure is written with the
  Agg renderer; without, it is made with pyplot so that a notebook shows it.

Every result is a NumPy array (CuPy data is copied to the host first).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from . import backend, nn
from ._plotting import finish_figure, new_figure
from . import functional as F

__all__ = ["GateRecord", "Trajectory", "record_gru_gates", "saliency_map", "conv_filters", "hidden_state_trajectory",
           "plot_filters", "plot_gates", "plot_saliency", "plot_trajectory"]


class GateRecord(NamedTuple):
    """Gate values of one layer and direction, indexed by input time step: each (T, N, H) for a GRU
    ((T, N, C, Ho, Wo) for a ConvGRU). ``h[t]`` is the state after reading step t (for the reverse
    direction: after reading steps T-1 down to t)."""
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    h: np.ndarray


# ------------------------------------------------------------------------------------------ gates
def _gru_time_major(gru, x, h0):
    """x as (T, N, I) and h0 as (L·D, N, H) or None, from a GRU's accepted layouts."""
    if x.ndim == 2:
        return x[:, None], (None if h0 is None else h0[:, None])
    return (x.transpose(1, 0, 2) if gru.batch_first else x), h0


def _convgru_time_major(layer, x, h0):
    if x.ndim == 4:
        return x[:, None], (None if h0 is None else h0[:, None])
    return (x.transpose(1, 0, 2, 3, 4) if layer.batch_first else x), h0


def _run_direction(step, xs, h, reverse):
    """Run ``step(x_t, h) -> (h_next, r, z, n)`` over xs (T, ...) forwards or backwards; stack by input index."""
    steps = len(xs)
    rows = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h, r, z, n = step(xs[t], h)
        rows[t] = (r, z, n, h)
    xp = backend.get_array_module(h)
    return [xp.stack([row[k] for row in rows]) for k in range(4)]


def _gru_records(gru, x, h0):
    x, h0 = _gru_time_major(gru, x, h0)
    records, layer_input = OrderedDict(), x
    for layer in range(gru.num_layers):
        outputs = []
        for direction in range(gru.num_directions):
            weights = gru.layer_parameters(layer, direction).arrays()
            k = layer * gru.num_directions + direction

            def step(x_t, h, weights=weights):
                h_next, cache = F.gru_step_forward(x_t, h, *weights, reset_after=gru.reset_after)
                return h_next, cache.r, cache.z, cache.n

            xp = backend.get_array_module(layer_input)
            h_start = xp.zeros((x.shape[1], gru.hidden_size), dtype=x.dtype) if h0 is None else h0[k]
            r, z, n, h = _run_direction(step, layer_input, h_start, reverse=bool(direction))
            records[gru.layer_key(layer, direction)] = GateRecord(*(backend.to_numpy(a) for a in (r, z, n, h)))
            outputs.append(h)
        layer_input = outputs[0] if len(outputs) == 1 else backend.get_array_module(x).concatenate(outputs, axis=2)
    return records


def _convgru_records(layer, x, h0):
    x, h0 = _convgru_time_major(layer, x, h0)
    records, layer_input = OrderedDict(), x
    for k in range(layer.num_layers):
        weights = layer.layer_parameters(k).arrays()
        stride, padding = layer.input_convolution(k)

        def step(x_t, h, weights=weights, stride=stride, padding=padding):
            h_next, cache = F.convgru_step_forward(x_t, h, *weights, stride=stride, padding=padding,
                                                   reset_after=layer.reset_after)
            return h_next, cache.r, cache.z, cache.n

        h_start = None if h0 is None else h0[k]
        if h_start is None:
            Ho, Wo = F.convgru_state_size(layer_input.shape[-2:], weights[0], stride, padding)
            xp = backend.get_array_module(x)
            h_start = xp.zeros((x.shape[1], layer.hidden_channels, Ho, Wo), dtype=x.dtype)
        r, z, n, h = _run_direction(step, layer_input, h_start, reverse=False)
        records[f"l{k}"] = GateRecord(*(backend.to_numpy(a) for a in (r, z, n, h)))
        layer_input = h
    return records


def _capture_inputs(model, x, kinds):
    """Run model(x) once (no_grad) and return [(path, layer, inputs)] for every sub-layer of ``kinds``."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]
    if not found:
        raise TypeError(f"record_gru_gates: {type(model).__name__} contains no GRU or ConvGRU layer")
    captured = {}
    for name, m in found:
        def spy(*inputs, _name=name, _m=m, **kwargs):
            captured.setdefault(_name, (inputs, kwargs))
            return type(_m).forward(_m, *inputs, **kwargs)
        object.__setattr__(m, "forward", spy)
    was_training = model.training
    try:
        model.eval()
        with nn.no_grad():
            model(x)
    finally:
        for _, m in found:
            m.__dict__.pop("forward", None)
        model.train(was_training)
    result = []
    for name, m in found:
        if name not in captured:
            raise RuntimeError(f"record_gru_gates: the layer {name!r} was not called by the model's forward")
        inputs, kwargs = captured[name]
        h0 = inputs[1] if len(inputs) > 1 else kwargs.get("h0")
        result.append((name, m, inputs[0], h0))
    return result


def record_gru_gates(gru_or_model, x, h0=None) -> "OrderedDict[str, GateRecord]":
    """Gate activations of every step, recomputed with the step kernels from the layer's own weights.

    ``gru_or_model``: an ``nn.GRU`` or ``nn.ConvGRU`` (then ``x``, ``h0`` are its
    inputs, in its layout), or any model containing such layers (then ``x`` is
    the model's input; each layer's input is captured from one forward pass, its first call).
    The recording is in evaluation mode: no dropout between layers.

    Returns an OrderedDict from ``"l{k}"`` / ``"l{k}_reverse"`` (prefixed by the
    layer's path in a model, e.g. ``"gru.l0"``) to a :class:`GateRecord` of
    NumPy arrays (T, N, H) (for a ConvGRU (T, N, C, Ho, Wo)), time-major
    whatever the layer's ``batch_first``; unbatched input gives N = 1.
    """
    kinds = (nn.GRU, nn.ConvGRU)
    if isinstance(gru_or_model, kinds):
        layers = [("", gru_or_model, x, h0)]
    elif isinstance(gru_or_model, nn.Module):
        layers = _capture_inputs(gru_or_model, x, kinds)
    else:
        raise TypeError(f"record_gru_gates expects a minigru GRU, ConvGRU or model, got {type(gru_or_model).__name__}")
    out = OrderedDict()
    for path, layer, layer_x, layer_h0 in layers:
        run = _gru_records if isinstance(layer, nn.GRU) else _convgru_records
        for key, record in run(layer, layer_x, layer_h0).items():
            out[f"{path}.{key}" if path else key] = record
    return out


# ------------------------------------------------------------------------------------------ saliency
def saliency_map(model, images, target_class=None):
    """|∂ score_c / ∂ pixel| maximised over channels (Simonyan et al. 2014): (N, H, W) NumPy.

    images: (N, C, H, W) floating, as the model takes them; target_class: None
    (each image's predicted class), an int, or (N,) ints. The gradient comes from
    ``model.backward`` with a one-hot upstream gradient on the class score, in
    evaluation mode; the model's parameter gradients and mode are restored after.
    """
    if not nn.is_grad_enabled():
        raise RuntimeError("saliency_map needs the backward pass: call it outside `with no_grad():`")
    if np.dtype(images.dtype).kind != "f" or images.ndim != 4:
        raise ValueError(f"saliency_map expects floating images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    xp = backend.get_array_module(images)
    saved = [p.grad.copy() for p in model.parameters()]
    was_training = model.training
    # a first convolution built with input_grad=False skips the input gradient: switch it on meanwhile
    skipping = [m for m in model.modules() if getattr(m, "input_grad", True) is False]
    try:
        for m in skipping:
            m.input_grad = True
        model.eval()
        scores = model(images)
        if scores.ndim != 2 or scores.shape[0] != images.shape[0]:
            raise ValueError(f"saliency_map: the model must return class scores (N, K), got {tuple(scores.shape)}")
        count = scores.shape[0]
        if target_class is None:
            targets = scores.argmax(axis=1)
        else:
            targets = xp.asarray(np.broadcast_to(np.asarray(backend.to_numpy(target_class)), (count,)))
            if int(targets.min()) < 0 or int(targets.max()) >= scores.shape[1]:
                raise ValueError(f"saliency_map: target_class must be in [0, {scores.shape[1] - 1}]")
        dscores = xp.zeros_like(scores)
        dscores[xp.arange(count), targets] = 1
        dx = model.backward(dscores)
        if isinstance(dx, tuple):
            dx = dx[0]
        if dx is None:
            raise ValueError(f"saliency_map: {type(model).__name__}.backward returned no input gradient")
    finally:
        for p, g in zip(model.parameters(), saved):
            p.grad[...] = g
        for m in skipping:
            m.input_grad = False
        model.train(was_training)
    return backend.to_numpy(xp.abs(dx).max(axis=1))


# ------------------------------------------------------------------------------------------ filters and PCA
def conv_filters(conv_layer):
    """A Conv2d's filters (or a weight array (K, C, kh, kw)), each scaled to [0, 1] by its own min and max
    (a constant filter becomes 0.5). Returns NumPy (K, C, kh, kw)."""
    weight = conv_layer.weight.data if isinstance(conv_layer, nn.Module) else conv_layer
    w = backend.to_numpy(weight).astype(np.float64)
    if w.ndim != 4:
        raise ValueError(f"conv_filters expects a Conv2d or a weight (K, C, kh, kw), got shape {w.shape}")
    low = w.min(axis=(1, 2, 3), keepdims=True)
    span = w.max(axis=(1, 2, 3), keepdims=True) - low
    return np.where(span > 0, (w - low) / np.where(span > 0, span, 1), 0.5)


class Trajectory(NamedTuple):
    """PCA of hidden states: ``points`` (T, N, k), ``components`` (k, H) (unit rows), ``explained_variance_ratio``
    (k,), ``mean`` (H,): points[t, n] = components @ (state[t, n] − mean)."""
    points: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray


def hidden_state_trajectory(states, n_components=2) -> Trajectory:
    """Project hidden states onto their first principal components (by SVD of the centred states).

    states: (T, N, H), (T, H), or a :class:`GateRecord` (its ``h``). All T·N states share one
    projection, so trajectories of different sequences are comparable. Component signs are fixed
    so that the largest-magnitude entry of each is positive.
    """
    h = states.h if isinstance(states, GateRecord) else states
    h = backend.to_numpy(h).astype(np.float64)
    if h.ndim == 2:
        h = h[:, None]
    if h.ndim != 3:
        raise ValueError(f"hidden_state_trajectory expects states (T, N, H) or (T, H), got shape {h.shape}")
    flat = h.reshape(-1, h.shape[-1])
    k = int(n_components)
    if not 1 <= k <= min(flat.shape):
        raise ValueError(f"hidden_state_trajectory: n_components must be in [1, {min(flat.shape)}], got {n_components}")
    mean = flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    total = float((singular ** 2).sum())
    ratio = (singular[:k] ** 2) / total if total > 0 else np.zeros(k)
    points = ((flat - mean) @ components.T).reshape(h.shape[0], h.shape[1], k)
    return Trajectory(points, components, ratio, mean)


# ------------------------------------------------------------------------------------------ plots
def _grid(count, ncols):
    ncols = max(1, min(int(ncols), count))
    return -(-count // ncols), ncols


def plot_filters(conv_layer, ncols=8, channel=None, path=None, title=None):
    """The filters of a Conv2d as small images: RGB when it has 3 input channels (and ``channel`` is None),
    else grey levels of input channel ``channel`` (default: the mean over input channels). Returns the Figure."""
    filters = conv_filters(conv_layer)
    K, C = filters.shape[:2]
    rows, cols = _grid(K, ncols)
    fig = new_figure((1.2 * cols, 1.2 * rows + 0.4), path)
    for k, ax in enumerate(fig.subplots(rows, cols, squeeze=False).ravel()):
        ax.set_axis_off()
        if k >= K:
            continue
        if C == 3 and channel is None:
            ax.imshow(filters[k].transpose(1, 2, 0), interpolation="nearest")
        else:
            tile = filters[k].mean(axis=0) if channel is None else filters[k, channel]
            ax.imshow(tile, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    return finish_figure(fig, path, title)


def plot_gates(record, sample=0, gates=("r", "z", "n", "h"), path=None, title=None):
    """Heat maps of a :class:`GateRecord` for one sequence: hidden unit (rows) against time step (columns).

    ConvGRU records are averaged over the state's pixels first (one row per channel). Returns the Figure.
    """
    if not isinstance(record, GateRecord):
        raise TypeError(f"plot_gates expects a GateRecord (one entry of record_gru_gates' result), "
                        f"got {type(record).__name__}")
    fig = new_figure((3.2 * len(gates), 3.0), path)
    for ax, name in zip(np.atleast_1d(fig.subplots(1, len(gates))), gates):
        values = getattr(record, name)[:, sample]                      # (T, H) or (T, C, Ho, Wo)
        values = values.reshape(values.shape[0], values.shape[1], -1).mean(axis=2)
        limits = (0, 1) if name in ("r", "z") else (-1, 1)
        image = ax.imshow(values.T, aspect="auto", cmap="viridis" if name in ("r", "z") else "coolwarm",
                          vmin=limits[0], vmax=limits[1], interpolation="nearest")
        ax.set_title({"r": "reset gate r", "z": "update gate z", "n": "candidate n", "h": "state h"}[name])
        ax.set_xlabel("time step")
        ax.set_ylabel("unit")
        fig.colorbar(image, ax=ax, fraction=0.046)
    return finish_figure(fig, path, title)


def _displayable(image):
    image = backend.to_numpy(image).astype(np.float64)
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0] if image.shape[0] == 1 else image.mean(0)


def plot_saliency(images, saliency, ncols=8, path=None, title=None):
    """Each image (top) above its saliency map (bottom). images (N, C, H, W), saliency (N, H, W). Returns the Figure."""
    count = min(len(saliency), int(ncols))
    saliency = backend.to_numpy(saliency)
    fig = new_figure((1.6 * count, 3.4), path)
    axes = fig.subplots(2, count, squeeze=False)
    for i in range(count):
        image = _displayable(images[i])
        axes[0, i].imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
        axes[1, i].imshow(saliency[i], cmap="hot", interpolation="nearest")
        axes[0, i].set_axis_off()
        axes[1, i].set_axis_off()
    return finish_figure(fig, path, title)


def plot_trajectory(trajectory, max_sequences=10, path=None, title=None):
    """The first two principal components of each sequence's states over time (circle: first step). Returns the Figure."""
    points = trajectory.points
    if points.shape[-1] < 2:
        raise ValueError("plot_trajectory needs a Trajectory with at least 2 components")
    fig = new_figure((4.5, 4.0), path)
    ax = fig.subplots()
    for n in range(min(points.shape[1], int(max_sequences))):
        line = ax.plot(points[:, n, 0], points[:, n, 1], "-", marker=".", alpha=0.8)[0]
        ax.plot(points[0, n, 0], points[0, n, 1], "o", color=line.get_color())
    ratio = trajectory.explained_variance_ratio
    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f}% of variance)")
    ax.grid(alpha=0.3)
    return finish_figure(fig, path, title)
