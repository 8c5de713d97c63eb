"""Write tests/golden/convgru_renet.npz: PyTorch's numbers for ConvGRU, ReNetLayer, MSELoss and BCEWithLogitsLoss.

Run from the repository root with torch installed::

    python tests/golden/make_convgru_renet.py

PyTorch has no ConvGRU and no ReNet layer, so this script defines their
reference forward passes with torch operations (``torch.nn.functional.conv2d``
and ``torch.nn.GRU``) following docs/derivations.md eqs. CG1-CG5 and RN1-RN6;
autograd supplies every gradient. tests/test_convgru.py and tests/test_renet.py
import :func:`torch_convgru` and :func:`torch_renet` from here for their live
torch comparisons; the .npz lets the same comparisons run without torch.

Every case stores float64 parameters (``<case>__param__<name>``, minigru's
state-dict names), inputs, upstream gradients, outputs and gradients
(``<case>__grad__<name>``).
"""
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("convgru_renet.npz")

CONVGRU_CASES = {
    # name: (layers, T, N, C_in, H, W, C, kernel, input kernel, input stride, input padding, reset_after)
    "convgru": (2, 3, 2, 2, 5, 4, 3, 3, 3, 1, None, False),
    "convgru_stride2": (1, 3, 2, 2, 7, 6, 2, 3, 5, 2, 2, False),
    "convgru_reset_after": (1, 2, 1, 3, 4, 5, 2, 5, 1, 1, 0, True),
}


def torch_convgru(x, h0, params, layers, input_stride, input_padding, reset_after):
    """ConvGRU forward in torch (eqs. CG1-CG5): x (T, N, C_in, H, W), h0 (layers, N, C, Ho, Wo) or None.

    ``params`` maps minigru's names (weight_ih_l0, ...) to tensors. Returns (out (T, N, C, Ho, Wo), h_n).
    """
    conv = torch.nn.functional.conv2d
    layer_input, finals = x, []
    for k in range(layers):
        w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
        b_ih, b_hh = params.get(f"bias_ih_l{k}"), params.get(f"bias_hh_l{k}")
        hidden, kh, kw = w_hh.shape[1:]
        same = (kh // 2, kw // 2)
        stride, padding = (input_stride, input_padding) if k == 0 else (1, same)
        if padding is None:
            padding = (w_ih.shape[2] // 2, w_ih.shape[3] // 2)
        h = h0[k] if h0 is not None else None
        outputs = []
        for x_t in layer_input:
            gx = conv(x_t, w_ih, b_ih, stride=stride, padding=padding)
            if h is None:
                h = torch.zeros((x_t.shape[0], hidden) + tuple(gx.shape[2:]), dtype=x.dtype)
            gx_r, gx_z, gx_n = gx.split(hidden, dim=1)
            if reset_after:
                gh_r, gh_z, gh_n = conv(h, w_hh, b_hh, padding=same).split(hidden, dim=1)
                r, z = torch.sigmoid(gx_r + gh_r), torch.sigmoid(gx_z + gh_z)
                n = torch.tanh(gx_n + r * gh_n)
            else:
                b_rz, b_n = (None, None) if b_hh is None else (b_hh[:2 * hidden], b_hh[2 * hidden:])
                gh_r, gh_z = conv(h, w_hh[:2 * hidden], b_rz, padding=same).split(hidden, dim=1)
                r, z = torch.sigmoid(gx_r + gh_r), torch.sigmoid(gx_z + gh_z)
                n = torch.tanh(gx_n + conv(r * h, w_hh[2 * hidden:], b_n, padding=same))
            h = (1 - z) * n + z * h
            outputs.append(h)
        layer_input = torch.stack(outputs)
        finals.append(h)
    return layer_input, torch.stack(finals)


def torch_renet(x, horizontal, vertical, patch_size):
    """ReNet layer forward in torch (eqs. RN1-RN6) with two bidirectional torch.nn.GRU: x (N, C, H, W)."""
    N, C, H, W = x.shape
    ph, pw = patch_size
    I, J = H // ph, W // pw
    patches = x.reshape(N, C, I, ph, J, pw).permute(4, 0, 2, 1, 3, 5).reshape(J, N * I, C * ph * pw)
    h_rows, _ = horizontal(patches)                                          # (J, N*I, 2h)
    features = h_rows.shape[-1]
    cols = h_rows.reshape(J, N, I, features).permute(2, 1, 0, 3).reshape(I, N * J, features)
    h_cols, _ = vertical(cols)                                               # (I, N*J, 2h)
    return h_cols.reshape(I, N, J, features).permute(1, 3, 0, 2)             # (N, 2h, I, J)


def _np(t):
    return t.detach().numpy().copy()


def _randn(gen, shape, scale=1.0, grad=True):
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).requires_grad_(grad)


def convgru_case(layers, steps, batch, c_in, height, width, hidden, k, k_in, stride, padding, reset_after, gen):
    params = {}
    for layer in range(layers):
        channels, kernel = (c_in, k_in) if layer == 0 else (hidden, k)
        params[f"weight_ih_l{layer}"] = _randn(gen, (3 * hidden, channels, kernel, kernel), 0.3)
        params[f"weight_hh_l{layer}"] = _randn(gen, (3 * hidden, hidden, k, k), 0.3)
        params[f"bias_ih_l{layer}"] = _randn(gen, (3 * hidden,), 0.3)
        params[f"bias_hh_l{layer}"] = _randn(gen, (3 * hidden,), 0.3)
    x = _randn(gen, (steps, batch, c_in, height, width))
    pad = padding if padding is not None else k_in // 2
    Ho, Wo = (height + 2 * pad - k_in) // stride + 1, (width + 2 * pad - k_in) // stride + 1
    h0 = _randn(gen, (layers, batch, hidden, Ho, Wo))
    out, h_n = torch_convgru(x, h0, params, layers, stride, padding, reset_after)
    dout, dh_n = _randn(gen, out.shape, grad=False), _randn(gen, h_n.shape, grad=False)
    torch.autograd.backward([out, h_n], [dout, dh_n])
    case = {"x": _np(x), "h0": _np(h0), "out": _np(out), "h_n": _np(h_n), "dout": _np(dout), "dh_n": _np(dh_n),
            "dx": _np(x.grad), "dh0": _np(h0.grad)}
    for name, p in params.items():
        case["param__" + name] = _np(p)
        case["grad__" + name] = _np(p.grad)
    return case


def renet_case(gen, batch=2, channels=3, height=6, width=4, hidden=3, patch=(2, 2)):
    horizontal = torch.nn.GRU(channels * patch[0] * patch[1], hidden, bidirectional=True).double()
    vertical = torch.nn.GRU(2 * hidden, hidden, bidirectional=True).double()
    x = _randn(gen, (batch, channels, height, width))
    out = torch_renet(x, horizontal, vertical, patch)
    dout = _randn(gen, out.shape, grad=False)
    out.backward(dout)
    case = {"x": _np(x), "out": _np(out), "dout": _np(dout), "dx": _np(x.grad)}
    for prefix, gru in (("horizontal", horizontal), ("vertical", vertical)):
        for name, p in gru.named_parameters():
            case[f"param__{prefix}.{name}"] = _np(p)
            case[f"grad__{prefix}.{name}"] = _np(p.grad)
    return case


def loss_cases(gen):
    cases = {}
    x, y = _randn(gen, (3, 4, 5), 3.0), torch.rand((3, 4, 5), generator=gen, dtype=torch.float64)
    y.requires_grad_(True)
    for reduction in ("mean", "sum", "none"):
        for kind in ("mse", "bce"):
            x.grad = y.grad = None
            if kind == "mse":
                loss = torch.nn.functional.mse_loss(x, y, reduction=reduction)
                extra = {}
            else:
                weight = torch.rand((4, 1), generator=gen, dtype=torch.float64)
                pos_weight = torch.rand((5,), generator=gen, dtype=torch.float64) + 0.5
                loss = torch.nn.functional.binary_cross_entropy_with_logits(x, y, weight=weight, reduction=reduction,
                                                                            pos_weight=pos_weight)
                extra = {"weight": _np(weight), "pos_weight": _np(pos_weight)}
            dout = _randn(gen, loss.shape, grad=False)
            loss.backward(dout)
            cases[f"{kind}_{reduction}"] = {"input": _np(x), "target": _np(y), "loss": _np(loss), "dout": _np(dout),
                                            "dinput": _np(x.grad), "dtarget": _np(y.grad), **extra}
    return cases


def main():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    arrays = {}
    cases = {name: convgru_case(*args, gen) for name, args in CONVGRU_CASES.items()}
    cases["renet"] = renet_case(gen)
    cases.update(loss_cases(gen))
    for case, values in cases.items():
        for key, value in values.items():
            arrays[f"{case}__{key}"] = value
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
