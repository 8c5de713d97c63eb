"""Damaged and wrong checkpoint files.

Every damaged or foreign file must give CheckpointError naming it: never another
exception, never silently different weights, never NumPy's advice about pickle.
"""
import hashlib
import io
import json
import os
import pickle
import struct
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigru.train import CheckpointError, load_checkpoint, module_rngs, read_checkpoint, save_checkpoint
from test_checkpoint import advance, build, make_model

FUNCTION_SCOPED = [HealthCheck.function_scoped_fixture]


def snapshot(model, opt, sched, loader) -> dict:
    """Every restored number, as plain NumPy / Python values."""
    return {"model": {k: np.array(v) for k, v in model.state_dict().items()},
            "opt": [{k: np.array(v) for k, v in s.items()} for s in opt.state.values()],
            "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
            "sched": sched.state_dict(), "loader": (loader.rng.bit_generator.state, loader.epoch),
            "rngs": {k: g.bit_generator.state for k, g in module_rngs(model).items()}}


def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    else:
        assert a == b


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A real small checkpoint (model, Adam, one-cycle schedule, loader, generators): (bytes, state it holds)."""
    model, opt, sched, loader = build()
    advance(model, opt, sched, loader, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("reference") / "c.npz"
    save_checkpoint(path, model, opt, sched, epoch=2, loaders=loader)
    return path.read_bytes(), snapshot(model, opt, sched, loader)


def load_fresh(path):
    model, opt, sched, loader = build(seed=1)
    load_checkpoint(path, model, opt, sched, loaders=loader)
    return snapshot(model, opt, sched, loader)


def assert_refused_or_identical(path, expected):
    """The outcome every damaged file must have: CheckpointError naming it, or exactly the saved state."""
    try:
        got = load_fresh(path)
    except CheckpointError as err:
        assert repr(str(path)) in str(err) and "\n" not in str(err), str(err)
        assert "allow_pickle" not in str(err)
    else:
        assert_same(got, expected)


def zip_regions(raw: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the zip's own structure: local headers plus each .npy header, central directory, end record."""
    regions = []
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        for info in zf.infolist():
            start = info.header_offset
            name_len, extra_len = struct.unpack("<HH", raw[start + 26:start + 30])
            regions.append((start, start + 30 + name_len + extra_len + 128))
    cd_offset = struct.unpack("<I", raw[-6:-2])[0]  # end record without comment: 22 bytes
    regions.append((cd_offset, len(raw)))
    return regions


@settings(max_examples=150, deadline=None, suppress_health_check=FUNCTION_SCOPED)
@given(data=st.data())
def test_single_byte_corruptions(tmp_path, reference, data):
    raw, expected = reference
    start, end = data.draw(st.sampled_from([(0, len(raw))] * 3 + zip_regions(raw)), label="region")
    position = data.draw(st.integers(start, min(end, len(raw)) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[position]), label="value")
    damaged = bytearray(raw)
    damaged[position] = value
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(damaged))
    assert_refused_or_identical(path, expected)


@settings(max_examples=40, deadline=None, suppress_health_check=FUNCTION_SCOPED)
@given(data=st.data())
def test_truncations(tmp_path, reference, data):
    raw, _ = reference
    length = data.draw(st.integers(0, len(raw) - 1) | st.integers(len(raw) - 100, len(raw) - 1), label="length")
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:length])
    with pytest.raises(CheckpointError, match="cut.npz"):
        load_fresh(path)


# ------------------------------------------------------------------ named wrong files

def test_npy_and_other_files_given_as_checkpoint(tmp_path):
    model = make_model()
    np.save(tmp_path / "weights.npy", np.zeros(3))
    os.replace(tmp_path / "weights.npy", tmp_path / "weights.npz")  # a .npy, whatever its name
    with pytest.raises(CheckpointError, match=r"weights\.npz.*single NumPy array \(\.npy\)"):
        load_checkpoint(tmp_path / "weights.npz", model)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"w": np.zeros(3)}))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "folder.npz").mkdir()
    np.savez(tmp_path / "float_meta.npz", __checkpoint__=np.zeros(3))
    (tmp_path / "list_meta.npz").write_bytes(b"")
    np.savez(tmp_path / "list_meta.npz", __checkpoint__=np.frombuffer(b"[1, 2]", np.uint8))
    for name in ("model.pkl", "empty.npz", "folder.npz", "float_meta.npz", "list_meta.npz"):
        with pytest.raises(CheckpointError, match=name) as info:
            read_checkpoint(tmp_path / name)
        assert "allow_pickle" not in str(info.value) and "pickle.load" not in str(info.value)


def digest(array) -> str:
    """The on-disk record of an array (its format must stay stable): SHA-256 of dtype, shape and C-order bytes."""
    h = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + h.hexdigest()


def test_recorded_digests_are_the_arrays_sha256(tmp_path, reference):
    raw, _ = reference
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        meta = json.loads(npz["__checkpoint__"].tobytes().decode())
        assert meta["arrays"] == {name: digest(npz[name]) for name in npz.files if name != "__checkpoint__"}


def rewrite(path, change_meta=None, change_arrays=None, digests=True):
    """Rewrite the checkpoint at ``path`` with its metadata and/or arrays changed; a valid zip and CRCs."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop("__checkpoint__").tobytes().decode())
    if change_arrays:
        change_arrays(arrays)
    if digests:
        meta["arrays"] = {name: digest(a) for name, a in arrays.items()}
    meta = change_meta(meta) if change_meta else meta
    arrays["__checkpoint__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=True)
            zf.writestr(name + ".npy", buffer.getvalue())


def _set(key, value):
    def change(meta):
        meta[key] = value
        return meta
    return change


def _set_in(outer, key, value):
    def change(meta):
        meta[outer][key] = value
        return meta
    return change


WRONG_METADATA = {
    "meta is a list": lambda meta: [meta], "meta is a string": lambda meta: "checkpoint",
    "meta is null": lambda meta: None, "no format": lambda meta: {k: v for k, v in meta.items() if k != "format"},
    "no model": lambda meta: {k: v for k, v in meta.items() if k != "model"},
    "format_version str": _set("format_version", "1"), "format_version newer": _set("format_version", 99),
    "model list": _set("model", []), "model str": _set("model", "weights"),
    "weight is a number": _set_in("model", "0.weight", 5),
    "weight ref is a number": _set_in("model", "0.weight", {"__array__": 7}),
    "weight ref is a list": _set_in("model", "0.weight", {"__array__": ["a"]}),
    "weight ref unknown": _set_in("model", "0.weight", {"__array__": "nope"}),
    "weight ref with more keys": _set_in("model", "0.weight", {"__array__": "model/0.weight", "x": 1}),
    "optimizer str": _set("optimizer", "Adam"), "optimizer class number": _set("optimizer", {"class": 5}),
    "optimizer state list": _set("optimizer", {"class": "Adam", "state": []}),
    "optimizer state garbage": _set("optimizer", {"class": "Adam", "state": {"param_groups": 5}}),
    "optimizer state wrong key": _set("optimizer", {"class": "Adam", "state": {"state": {}, "groups": []}}),
    "scheduler state garbage": _set("scheduler", {"class": "OneCycleLR", "state": {"last_epoch": [1]}}),
    "epoch str": _set("epoch", "3"), "epoch negative": _set("epoch", -1), "epoch bool": _set("epoch", True),
    "epoch float": _set("epoch", 2.5), "history list": _set("history", [1]),
    "history garbage": _set("history", {"train_loss": 3}),
    "extra list": _set("extra", []), "loaders list": _set("loaders", []),
    "loader state garbage": _set("loaders", {"train": {"rng": 5}}),
    "model rng number": _set("model_rngs", {"0.rng": 5}),
    "model rng garbage": _set_in("model_rngs", "0.rng", {"bit_generator": "PCG64", "state": 5}),
    "model rng other kind": _set_in("model_rngs", "0.rng", {"bit_generator": "MT19937", "state": {}}),
    "model_class number": _set("model_class", 3),
    "digests list": _set("arrays", []), "digest number": _set_in("arrays", "model/0.weight", 3),
    "digest wrong": _set_in("arrays", "model/0.weight", "sha256:" + "0" * 64),
    "digest missing": lambda meta: {**meta, "arrays": {k: v for k, v in meta["arrays"].items()
                                                       if k != "model/0.bias"}},
}


@pytest.mark.parametrize("change", WRONG_METADATA.values(), ids=WRONG_METADATA.keys())
def test_wrong_metadata_refused_before_anything_changes(tmp_path, change):
    model, opt, sched, loader = build()
    advance(model, opt, sched, loader, np.random.default_rng(0))
    path = tmp_path / "c.npz"
    save_checkpoint(path, model, opt, sched, epoch=1, history={"epoch": [1], "train_loss": [0.5]}, loaders=loader)
    rewrite(path, change_meta=change)
    target = build(seed=1)
    before = snapshot(*target)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, *target[:3], loaders=target[3])
    assert repr(str(path)) in str(info.value) and "\n" not in str(info.value)
    after = snapshot(*target)
    if "loader" not in str(info.value):  # a loader is restored last: the only state that cannot be tried first
        assert_same(after, before)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=False)
                    | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=FUNCTION_SCOPED)
@given(key=st.sampled_from(["model", "model_class", "model_rngs", "rngs", "epoch", "history", "optimizer",
                            "scheduler", "loaders", "extra", "arrays", "format_version", "created"]),
       value=JSON, nested=st.booleans())
def test_any_json_value_anywhere_in_the_metadata(tmp_path, reference, key, value, nested):
    raw, _ = reference
    path = tmp_path / "c.npz"
    path.write_bytes(raw)

    def change(meta):
        if nested and isinstance(meta.get(key), dict) and meta[key]:
            meta[key][sorted(meta[key])[0]] = value  # e.g. one weight, one generator, the optimizer's state
        else:
            meta[key] = value
        return meta
    rewrite(path, change_meta=change, digests=key != "arrays")
    # A valid value may load (e.g. another epoch, or no loader state: a warning); anything else is refused.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_fresh(path)
        except CheckpointError as err:
            assert repr(str(path)) in str(err) and "\n" not in str(err)


def _replace(name, array):
    def change(arrays):
        arrays[name] = array
    return change


WRONG_ARRAYS = {
    "other numbers, same shape": (_replace("model/0.weight", np.ones((3, 4), np.float32)), False),
    "an extra array": (_replace("model/zz", np.ones(2)), False),
    "an array removed": (lambda arrays: arrays.pop("model/0.bias"), False),
    "object array": (_replace("model/0.weight", np.array([1, "a"], dtype=object)), True),
    "string weight": (_replace("model/0.weight", np.array(["a", "b"])), True),
    "structured weight": (_replace("model/0.weight", np.zeros(3, dtype=[("a", "f4")])), True),
}


@pytest.mark.parametrize("change, with_digests", WRONG_ARRAYS.values(), ids=WRONG_ARRAYS.keys())
def test_wrong_arrays_refused(tmp_path, change, with_digests):
    path = tmp_path / "c.npz"
    save_checkpoint(path, make_model())
    rewrite(path, change_arrays=change, digests=with_digests)
    with pytest.raises(CheckpointError, match="c.npz") as info:
        load_checkpoint(path, make_model(seed=4))
    assert "allow_pickle" not in str(info.value)


def test_checkpoint_without_digests_still_loads(tmp_path):
    # files of minigru versions before the digests: the zip's CRC-32 and the strict reader protect them
    model = make_model()
    save_checkpoint(tmp_path / "c.npz", model)
    rewrite(tmp_path / "c.npz", change_meta=lambda meta: {k: v for k, v in meta.items() if k != "arrays"},
            digests=False)
    other = make_model(seed=4)
    load_checkpoint(tmp_path / "c.npz", other)
    np.testing.assert_array_equal(other[1].weight.data, model[1].weight.data)


def _member_offsets(raw, name):
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = zf.getinfo(name)
    cd_entry = raw.index(b"PK\x01\x02" + raw[info.header_offset + 4:info.header_offset + 8])
    return info, cd_entry


@pytest.mark.parametrize("field, value", [("flags", 0x01), ("flags", 0x40), ("flags", 0x20),
                                          ("method", 8), ("method", 12), ("method", 14), ("method", 99)])
def test_corrupted_zip_directory_fields(tmp_path, reference, field, value):
    # encryption / patched-data flags and compression methods: zipfile raises RuntimeError, NotImplementedError,
    # zlib.error, ... for these; each must be a CheckpointError naming the file.
    raw, _ = reference
    damaged = bytearray(raw)
    cd_offset = struct.unpack("<I", raw[-6:-2])[0]
    for entry in range(cd_offset, len(raw) - 22):
        if raw[entry:entry + 4] == b"PK\x01\x02":
            if field == "flags":
                damaged[entry + 8] |= value
            else:
                damaged[entry + 10] = value
    path = tmp_path / "fields.npz"
    path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="fields.npz"):
        load_fresh(path)


def test_npy_header_that_declares_less_data_than_stored(tmp_path):
    # A header shrunk from (3, 4) to (3, 1) with a consistent zip CRC: numpy alone would read 3 numbers
    # and stop; the strict reader requires the member to end where the header says.
    path = tmp_path / "c.npz"
    save_checkpoint(path, make_model())
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    header = members["model/0.weight.npy"]
    members["model/0.weight.npy"] = header.replace(b"(3, 4)", b"(3, 1)", 1)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(CheckpointError, match="c.npz.*more bytes than its header declares"):
        read_checkpoint(path)
