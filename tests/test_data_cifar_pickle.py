"""The restricted CIFAR unpickler: every pickle Python 3 writes of a CIFAR-like dict loads, nothing else runs.

Python 3 writes bytes at protocols 0-2 as the call ``_codecs.encode(<str>, "latin1")``
(and ``bytes()`` for b""); the unpickler accepts exactly those two calls.
Malicious pickles are written opcode by opcode, so that they can name any global
with any arguments; a marker file shows that nothing was run.
"""
import os
import pathlib
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigru
from minigru.data import DatasetError, UnsafeDataError
from minigru.data.cifar_pickle import read_python_batch, read_python_meta, safe_unpickle

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ------------------------------------------------------------------ real pickles written by Python 3

@st.composite
def cifar_batches(draw):
    """A CIFAR-like batch dict as a course might re-save it: str or bytes keys and strings, list or array labels."""
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    as_bytes = draw(st.booleans())  # what pickle.load(f, encoding="bytes") gives: bytes keys and strings
    text = (lambda s: s.encode("latin1")) if as_bytes else (lambda s: s)
    label_kind = draw(st.sampled_from(["list", "int64", "uint8"]))
    label_value = [int(v) for v in labels] if label_kind == "list" else labels.astype(label_kind)
    # odd names too: latin-1 characters, an empty name (pickled as bytes() at protocols 0-2 when bytes)
    names = draw(st.lists(st.text(st.characters(max_codepoint=255), max_size=6), min_size=n, max_size=n))
    batch = {text("batch_label"): text(draw(st.text(st.characters(max_codepoint=255), max_size=8))),
             text("labels"): label_value, text("data"): images, text("filenames"): [text(s) for s in names]}
    return batch, images, labels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cifar_batches(), protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
       fix_imports=st.booleans(), python_pickler=st.booleans())
def test_every_python3_pickle_of_a_batch_loads(tmp_path, case, protocol, fix_imports, python_pickler):
    batch, images, labels = case
    dumps = pickle._dumps if python_pickler else pickle.dumps  # the pure-Python and the C pickler
    path = tmp_path / "data_batch_1"
    path.write_bytes(dumps(batch, protocol=protocol, fix_imports=fix_imports))
    got_images, got_labels = read_python_batch(path)
    np.testing.assert_array_equal(got_images, images.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("as_bytes", [False, True])
def test_every_python3_pickle_of_the_meta_loads(tmp_path, protocol, as_bytes):
    text = (lambda s: s.encode("latin1")) if as_bytes else (lambda s: s)
    meta = {text("num_cases_per_batch"): 10000, text("label_names"): [text(c) for c in CLASSES],
            text("num_vis"): 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    assert read_python_meta(tmp_path / "batches.meta") == tuple(CLASSES)


def test_protocol_2_bytes_are_the_codecs_call():
    # The premise of the fix: Python 3 stores bytes at protocol 2 through _codecs.encode(str, 'latin1').
    raw = pickle.dumps(b"\x00\xff", protocol=2)
    assert b"c_codecs\nencode\n" in raw and b"latin1" in raw
    assert safe_unpickle(raw) == b"\x00\xff"
    assert safe_unpickle(pickle.dumps(b"", protocol=2)) == b""


# ------------------------------------------------------------------ hand-written pickles: any global, any args

def _unicode(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _bytes(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b  # BINBYTES


def _arg(v) -> bytes:
    if isinstance(v, str):
        return _unicode(v)
    if isinstance(v, bytes):
        return _bytes(v)
    if isinstance(v, bool):
        return b"\x88" if v else b"\x89"
    if isinstance(v, int):
        return b"J" + struct.pack("<i", v)
    if v is None:
        return b"N"
    if isinstance(v, tuple):
        return b"(" + b"".join(_arg(x) for x in v) + b"t"
    if isinstance(v, dict):
        return b"}(" + b"".join(_arg(k) + _arg(x) for k, x in v.items()) + b"u"
    if isinstance(v, list):
        return b"](" + b"".join(_arg(x) for x in v) + b"e"
    raise TypeError(v)


def call_pickle(module: str, name: str, *args) -> bytes:
    """A protocol 4 pickle of {'data': module.name(*args), 'labels': [0]}: STACK_GLOBAL takes any names."""
    call = _unicode(module) + _unicode(name) + b"\x93" + b"(" + b"".join(_arg(a) for a in args) + b"tR"
    return b"\x80\x04}(" + _unicode("data") + call + _unicode("labels") + b"](J\x00\x00\x00\x00e" + b"u."


def test_call_pickle_fixture_means_what_it_says():
    # Read by the standard (trusting) unpickler, the hand-written call really is made.
    assert pickle.loads(call_pickle("_codecs", "encode", "ab", "rot13"))["data"] == "no"
    assert pickle.loads(call_pickle("builtins", "len", [1, 2, 3]))["data"] == 3


def _refused(tmp_path, raw: bytes, marker) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    with pytest.raises(UnsafeDataError, match="refusing") as info:
        read_python_batch(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


# Named, dangerous or merely foreign callables (with arguments that would leave a marker if run).
DANGEROUS = [
    ("os", "system", "touch {m}"), ("posix", "system", "touch {m}"), ("subprocess", "getoutput", "touch {m}"),
    ("builtins", "eval", "open({m!r}, 'w')"), ("builtins", "exec", "open({m!r}, 'w')"),
    ("__builtin__", "eval", "open({m!r}, 'w')"), ("builtins", "open", "{m}", "w"),
    ("io", "open", "{m}", "w"), ("pathlib", "Path", "{m}"), ("builtins", "getattr", "x", "upper"),
    ("_codecs", "decode", "x", "latin1"), ("_codecs", "lookup", "latin1"), ("_codecs", "register", "x"),
    ("codecs", "encode", "x", "latin1"), ("codecs", "open", "{m}", "w"), ("_codecs", "latin_1_encode", "x"),
    ("builtins", "bytearray", "x", "latin1"), ("builtins", "str", "x"), ("builtins", "bytes", "x", "latin1"),
    ("numpy", "load", "{m}"), ("numpy", "frombuffer", b"x"), ("numpy.core.multiarray", "scalar", "x"),
    ("numpy.testing._private.utils", "runstring", "open({m!r}, 'w')", ()), ("pickle", "loads", b"x"),
    ("shutil", "rmtree", "{m}"), ("functools", "partial", "x"), ("operator", "attrgetter", "x"),
    ("numpy", "ndarray", (10**6,)),  # numpy pickles only pass the class to _reconstruct, never call it
]


@pytest.mark.parametrize("call", DANGEROUS, ids=[f"{m}.{n}" for m, n, *_ in DANGEROUS])
def test_foreign_callables_refused_before_running(tmp_path, call):
    module, name, *args = call
    marker = tmp_path / "pwned"
    args = [a.format(m=str(marker)) if isinstance(a, str) else a for a in args]
    _refused(tmp_path, call_pickle(module, name, *args), marker)


# Encodings that _codecs.encode must not accept: bytes-to-bytes codecs (a zlib "encode" compresses whatever
# it is given), text transforms, codecs found by importing modules, and aliases of latin-1 itself.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(encoding=st.one_of(
    st.sampled_from(["rot13", "zlib", "zlib_codec", "bz2", "base64", "hex", "uu", "quopri", "utf-8", "utf-7",
                     "idna", "punycode", "unicode_escape", "raw_unicode_escape", "undefined", "mbcs",
                     "latin-1", "LATIN1", "iso-8859-1", "l1", "latin1 ", "latin1\x00", "encodings.latin_1"]),
    st.text(max_size=12).filter(lambda s: s != "latin1")))
def test_codecs_encode_only_with_latin1(tmp_path, encoding):
    _refused(tmp_path, call_pickle("_codecs", "encode", "abc", encoding), tmp_path / "never")


@pytest.mark.parametrize("args", [
    ("abc",), ("abc", "latin1", "strict"), ("abc", "latin1", "ignore"), (b"abc", "latin1"), (["abc"], "latin1"),
    (("abc",), "latin1"), (3, "latin1"), ("abc", b"latin1"),
], ids=repr)
def test_codecs_encode_with_any_other_arguments_refused(tmp_path, args):
    _refused(tmp_path, call_pickle("_codecs", "encode", *args), tmp_path / "never")


@pytest.mark.parametrize("module", ["builtins", "__builtin__"])
@pytest.mark.parametrize("args", [(10**9,), ("abc", "latin1"), (b"x",), ([1, 2],)], ids=repr)
def test_bytes_only_without_arguments(tmp_path, module, args):
    _refused(tmp_path, call_pickle(module, "bytes", *args), tmp_path / "never")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(module=st.text(min_size=1, max_size=20), name=st.text(min_size=1, max_size=20))
def test_any_other_global_refused(tmp_path, module, name):
    allowed = {("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes"), ("numpy", "ndarray"),
               ("numpy", "dtype")}
    if (module, name) in allowed or name in ("_reconstruct", "_frombuffer"):
        return
    _refused(tmp_path, call_pickle(module, name, "x"), tmp_path / "never")


@pytest.mark.parametrize("shape", [(10**6,), (0, 0), (1,), [0]], ids=repr)
def test_numpy_reconstruct_only_as_numpy_writes_it(tmp_path, shape):
    # numpy always writes _reconstruct(ndarray, (0,), b'b'); any other shape only makes numpy allocate memory.
    raw = call_pickle("numpy.core.multiarray", "_reconstruct", "ndarray-placeholder", shape, b"b")
    raw = raw.replace(_unicode("ndarray-placeholder"), _unicode("numpy") + _unicode("ndarray") + b"\x93")
    _refused(tmp_path, raw, tmp_path / "never")


def test_latin1_call_with_a_non_latin1_character_is_a_corrupt_file(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(call_pickle("_codecs", "encode", "caf\u00e9 \u20ac", "latin1"))
    with pytest.raises(DatasetError, match="data_batch_1.*corrupt") as info:
        read_python_batch(path)
    assert not isinstance(info.value, UnsafeDataError)  # well-formed call, impossible value: corrupt, not unsafe


def test_refusals_from_inside_numpy_reconstruction_name_the_file(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": np.array([1, "a"], dtype=object), "labels": [0]}, protocol=2))
    with pytest.raises(UnsafeDataError, match=f"{path}.*only numeric dtypes"):
        read_python_batch(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), data=st.data())
def test_damaged_pickles_give_dataset_error_naming_the_file(tmp_path, protocol, data):
    """Byte changes or truncation of a real batch pickle: a valid batch, or DatasetError (UnsafeDataError
    included) naming the file; never another exception."""
    rng = np.random.default_rng(protocol)
    batch = {b"data": rng.integers(0, 256, size=(2, 3072), dtype=np.uint8), b"labels": [1, 2],
             b"filenames": [b"a.png", b"b.png"]}
    raw = bytearray(pickle.dumps(batch, protocol=protocol))
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            # mostly outside the 6 KiB of pixels, where the opcodes are
            where = data.draw(st.integers(0, 200) | st.integers(len(raw) - 200, len(raw) - 1)
                              | st.integers(0, len(raw) - 1), label="at")
            raw[where] = data.draw(st.integers(0, 255), label="value")
    path = tmp_path / "data_batch_1"
    path.write_bytes(bytes(raw))
    try:
        images, labels = read_python_batch(path)
    except DatasetError as err:
        assert str(path) in str(err)
    else:
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and labels.shape == (len(images),)


# BUILD (__setstate__) states the allowed objects must refuse: numpy's own dtype.__setstate__ trusts its
# tuple, and the first one crashed the interpreter (a segmentation fault) before the checks.
_DTYPE = _unicode("numpy") + _unicode("dtype") + b"\x93" + _arg(("u1", False, True)) + b"R"
_GOOD_DTYPE = _DTYPE + b"(" + _arg(3) + _arg("|") + b"NNN" + _arg(-1) + _arg(-1) + _arg(0) + b"tb"
_ARRAY = (_unicode("numpy.core.multiarray") + _unicode("_reconstruct") + b"\x93" + b"(" + _unicode("numpy")
          + _unicode("ndarray") + b"\x93" + _arg((0,)) + _arg(b"b") + b"tR")


def _with_state(obj_ops: bytes, state_ops: bytes) -> bytes:
    return b"\x80\x04}(" + _unicode("data") + obj_ops + state_ops + b"b" + _unicode("labels") + b"](J\0\0\0\0eu."


def _tuple_ops(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"t"


BAD_STATES = {
    "dtype state that crashed numpy": _with_state(_DTYPE, _arg((3, "|", 1313754637, -1, -1, 0))),
    "dtype state with field names": _with_state(_DTYPE, _tuple_ops(_arg(3), _arg("|"), b"N", _arg(("a",)),
                                                                   b"N", _arg(-1), _arg(-1), _arg(0))),
    "dtype state twice": _with_state(_GOOD_DTYPE, _tuple_ops(_arg(3), _arg("<"), b"NNN", _arg(-1), _arg(-1), _arg(0))),
    "array state with a non-dtype": _with_state(_ARRAY, _arg((1, (2,), "u1", False, b"xy"))),
    "array state with a list as data": _with_state(_ARRAY, _tuple_ops(_arg(1), _arg((2,)), _GOOD_DTYPE,
                                                                      b"\x89", _arg([1, 2]))),
    "array state with negative shape": _with_state(_ARRAY, _tuple_ops(_arg(1), _arg((-2,)), _GOOD_DTYPE,
                                                                      b"\x89", _arg(b"xy"))),
    "BUILD on an allowed global": _with_state(_unicode("numpy") + _unicode("dtype") + b"\x93",
                                              _arg(({"x": 1}, {"function": "print"}))),
}

_RUN = ("import sys\nfrom minigru.data import DatasetError\nfrom minigru.data.cifar_pickle import safe_unpickle\n"
        "try:\n    safe_unpickle(sys.stdin.buffer.read(), 'the-file')\n"
        "except DatasetError as err:\n    print(type(err).__name__, err)\n")


@pytest.mark.parametrize("raw", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_damaged_object_states_refused_without_crashing(raw):
    # In a child process, so that a crash is a failure rather than the end of the test run.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pathlib.Path(minigru.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _RUN], input=raw, capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert done.stdout.decode().startswith("UnsafeDataError the-file: refusing"), done.stdout.decode()
