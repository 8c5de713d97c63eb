"""ReNet: the patch/regroup kernels, ReNetLayer and the ReNet model, against finite differences, explicit index
formulas, a PyTorch twin (two torch.nn.GRU) and golden files."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from minigru import backend, nn
from minigru import functional as F
from minigru.gradcheck import check_module, numerical_gradient, rel_error
from minigru.models.renet import ReNet

GOLDEN = Path(__file__).parent / "golden" / "convgru_renet.npz"
TOL, EPS, TORCH_TOL = 1e-6, 1e-5, 1e-8


# --------------------------------------------------------------------- the rearrangement kernels
@pytest.mark.parametrize("shape, patch", [((1, 1, 2, 2), 1), ((2, 3, 6, 4), 2), ((2, 2, 3, 6), (3, 2))], ids=str)
def test_patch_rows_match_index_formula_and_invert(xp, shape, patch):
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal(shape))
    rows, cache = F.patch_rows_forward(x, patch)
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    N, C, H, W = shape
    I, J = H // ph, W // pw
    host = backend.to_numpy(x)
    for n in range(N):
        for i in range(I):
            for j in range(J):
                expected = host[n, :, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].reshape(-1)   # eq. RN1
                assert np.array_equal(backend.to_numpy(rows[j, n * I + i]), expected)
    assert np.array_equal(backend.to_numpy(F.patch_rows_backward(rows, cache)), host)       # eq. RN2
    drows = xp.asarray(rng.standard_normal(rows.shape))
    numeric = numerical_gradient(lambda _: F.patch_rows_forward(x, patch)[0], x, drows)
    assert rel_error(F.patch_rows_backward(drows, cache), numeric) <= TOL


@pytest.mark.parametrize("images, rows, cols", [(1, 1, 1), (2, 3, 5), (3, 2, 1)])
def test_regroup_kernels_match_index_formulas_and_gradcheck(xp, images, rows, cols):
    rng = np.random.default_rng(1)
    h_rows = xp.asarray(rng.standard_normal((cols, images * rows, 4)))
    h_cols, cache = F.rows_to_columns_forward(h_rows, images, rows)
    out, image_cache = F.columns_to_image_forward(h_cols, images)
    a, b, c = (backend.to_numpy(v) for v in (h_rows, h_cols, out))
    for n in range(images):
        for i in range(rows):
            for j in range(cols):
                assert np.array_equal(b[i, n * cols + j], a[j, n * rows + i])               # eq. RN4
                assert np.array_equal(c[n, :, i, j], b[i, n * cols + j])                    # eq. RN6
    dcols = xp.asarray(rng.standard_normal(h_cols.shape))
    numeric = numerical_gradient(lambda _: F.rows_to_columns_forward(h_rows, images, rows)[0], h_rows, dcols)
    assert rel_error(F.rows_to_columns_backward(dcols, cache), numeric) <= TOL
    dout = xp.asarray(rng.standard_normal(out.shape))
    numeric = numerical_gradient(lambda _: F.columns_to_image_forward(h_cols, images)[0], h_cols, dout)
    assert rel_error(F.columns_to_image_backward(dout, image_cache), numeric) <= TOL


def test_patch_kernels_reject_bad_shapes():
    with pytest.raises(ValueError, match="cannot be cut into 2x2 patches"):
        F.patch_rows_forward(np.zeros((1, 3, 5, 4)), 2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        F.patch_rows_forward(np.zeros((3, 4, 4)), 2)
    rows, cache = F.patch_rows_forward(np.zeros((1, 3, 4, 4)), 2)
    with pytest.raises(ValueError, match="drows must have shape"):
        F.patch_rows_backward(rows[:1], cache)


# --------------------------------------------------------------------- the layer
LAYER_CASES = [
    dict(shape=(1, 2, 6, 4), patch=2, hidden=3),              # batch 1, 3x2 patches (odd number of rows)
    dict(shape=(2, 3, 3, 5), patch=1, hidden=2),              # patch size 1, odd sizes
    dict(shape=(2, 1, 2, 6), patch=(2, 3), hidden=3, seed=4),  # one row of patches, non-square patches
    dict(shape=(1, 2, 6, 6), patch=2, hidden=2, kw=dict(reset_after=False, bias=False)),
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: f"{c['shape']}-{c['patch']}-{c.get('kw', {})}")
def test_renet_layer_gradcheck(backend_name, case):
    # seeds fixed (see tests/test_gru.py): seed 3 makes one entry of this case cancel below the finite-difference floor
    rng = np.random.default_rng(case.get("seed", 3))
    layer = nn.ReNetLayer(case["shape"][1], case["hidden"], case["patch"], rng=0, **case.get("kw", {}))
    x = backend.to_backend(rng.standard_normal(case["shape"]))
    report = check_module(layer, x, eps=EPS, tol=TOL, verbose=False)
    assert report.passed, str(report)


def test_renet_layer_shapes_names_and_errors():
    layer = nn.ReNetLayer(3, 5, 2, rng=0)
    assert layer(np.zeros((2, 3, 8, 6), dtype=np.float32)).shape == (2, 10, 4, 3)
    assert list(layer.state_dict())[:2] == ["horizontal.weight_ih_l0", "horizontal.weight_hh_l0"]
    assert layer.horizontal.weight_ih_l0.shape == (15, 12) and layer.vertical.weight_ih_l0.shape == (15, 10)
    assert not np.array_equal(layer.horizontal.weight_hh_l0.data, layer.vertical.weight_hh_l0.data)
    with pytest.raises(ValueError, match="cannot be cut into 2x2 patches"):
        layer(np.zeros((2, 3, 7, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\)"):
        layer(np.zeros((2, 8, 6, 3), dtype=np.float32))
    with nn.no_grad():
        layer(np.zeros((1, 3, 4, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.zeros((1, 10, 2, 2), dtype=np.float32))


def _reference_module():
    pytest.importorskip("torch")
    path = Path(__file__).parent / "golden" / "make_convgru_renet.py"
    spec = importlib.util.spec_from_file_location("make_convgru_renet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape, patch", [((2, 3, 6, 4), (2, 2)), ((1, 2, 3, 5), (1, 1)), ((2, 1, 4, 6), (2, 3))],
                         ids=str)
def test_renet_layer_matches_torch(shape, patch):
    ref = _reference_module()
    torch = ref.torch
    rng = np.random.default_rng(7)
    ours = nn.ReNetLayer(shape[1], 3, patch, rng=0, dtype=np.float64)
    horizontal = torch.nn.GRU(shape[1] * patch[0] * patch[1], 3, bidirectional=True).double()
    vertical = torch.nn.GRU(6, 3, bidirectional=True).double()
    state = {k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()}
    horizontal.load_state_dict({k[len("horizontal."):]: v for k, v in state.items() if k.startswith("horizontal.")})
    vertical.load_state_dict({k[len("vertical."):]: v for k, v in state.items() if k.startswith("vertical.")})
    x = rng.standard_normal(shape)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = ref.torch_renet(x_t, horizontal, vertical, patch)
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) <= TORCH_TOL
    assert rel_error(ours.backward(dout), x_t.grad.numpy()) <= TORCH_TOL
    theirs = {f"horizontal.{k}": p for k, p in horizontal.named_parameters()}
    theirs.update({f"vertical.{k}": p for k, p in vertical.named_parameters()})
    for name, p in ours.named_parameters():
        assert rel_error(p.grad, theirs[name].grad.numpy()) <= TORCH_TOL


def test_renet_layer_matches_golden():
    with np.load(GOLDEN, allow_pickle=False) as data:
        g = {k[len("renet__"):]: data[k] for k in data.files if k.startswith("renet__")}
    layer = nn.ReNetLayer(g["x"].shape[1], g["out"].shape[1] // 2, 2, dtype=np.float64)
    layer.load_state_dict({k[len("param__"):]: v for k, v in g.items() if k.startswith("param__")})
    assert rel_error(layer(g["x"]), g["out"]) <= TORCH_TOL
    assert rel_error(layer.backward(g["dout"]), g["dx"]) <= TORCH_TOL
    for name, p in layer.named_parameters():
        assert rel_error(p.grad, g["grad__" + name]) <= TORCH_TOL


# --------------------------------------------------------------------- the model
def test_renet_model_gradcheck():
    model = ReNet(num_classes=3, in_channels=2, image_size=(4, 6), hidden_sizes=(2, 2), patch_sizes=[(2, 2), (1, 3)],
                  fc_hidden=(3,), rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 6))
    report = check_module(model, x, eps=EPS, tol=TOL, verbose=False)
    assert report.passed, str(report)


def test_renet_model_shapes_config_and_errors():
    model = ReNet(rng=0)
    logits = model(np.zeros((2, 3, 32, 32), dtype=np.float32))
    assert logits.shape == (2, 10)
    assert model.backward(np.ones_like(logits)).shape == (2, 3, 32, 32)
    assert model.classifier[-1].in_features == 64 * 8 * 8
    assert ReNet(**model.config, rng=0).num_parameters() == model.num_parameters()
    with pytest.raises(ValueError, match="do not tile"):
        ReNet(image_size=30)
    with pytest.raises(ValueError, match="2 sizes for 3 ReNet layers"):
        ReNet(hidden_sizes=(4, 4, 4), patch_sizes=[(2, 2), 2])
    with pytest.raises(ValueError, match="built for 32x32"):
        model(np.zeros((2, 3, 16, 16), dtype=np.float32))
