"""ImageFolder: class folders, colour modes, resizing, ignored files, links and clear errors."""
import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigru.backend import to_numpy
from minigru.data import DataLoader, DatasetError, DatasetNotFoundError, ImageFolder

Image = pytest.importorskip("PIL.Image")


def save_rgb(path, array_hwc):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array_hwc, mode="RGB").save(path)


@pytest.fixture
def tree(tmp_path, rng):
    """root/{cat,dog,emu}/...png with known pixels; returns (root, {relative path: (H, W, 3) array})."""
    pixels = {}
    for name in ["dog/b.png", "dog/a.png", "cat/x.png", "cat/sub/y.png", "emu/z.png"]:
        array = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
        save_rgb(tmp_path / name, array)
        pixels[name] = array
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "stray.png").write_bytes(b"files at the top level are not classes")
    return tmp_path, pixels


def test_classes_order_and_pixels(tree):
    root, pixels = tree
    folder = ImageFolder(root)
    assert folder.classes == ["cat", "dog", "emu"]
    assert folder.class_to_idx == {"cat": 0, "dog": 1, "emu": 2}
    assert len(folder) == 5
    expected = ["cat/x.png", "cat/sub/y.png", "dog/a.png", "dog/b.png", "emu/z.png"]
    assert [p.relative_to(root).as_posix() for p, _ in folder.samples] == expected
    np.testing.assert_array_equal(folder.targets, [0, 0, 1, 1, 2])
    for i, name in enumerate(expected):
        image, label = folder[i]
        assert image.dtype == np.uint8 and image.shape == (3, 5, 6)
        np.testing.assert_array_equal(image, pixels[name].transpose(2, 0, 1))
        assert label == folder.class_to_idx[name.split("/")[0]]


def test_explicit_classes_select_and_order(tree):
    root, _ = tree
    folder = ImageFolder(root, classes=["emu", "cat"])
    assert folder.classes == ["emu", "cat"] and len(folder) == 3
    assert folder[0][1] == 0 and folder[2][1] == 1
    with pytest.raises(DatasetError, match=r"no folder for classes \['yak'\]"):
        ImageFolder(root, classes=["cat", "yak"])


def test_colour_modes_become_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    (tmp_path / "a").mkdir()
    Image.fromarray(gray, mode="L").save(tmp_path / "a" / "gray.png")
    rgba = np.random.default_rng(0).integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a" / "rgba.png")
    palette_img = Image.new("P", (4, 3))
    palette_img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette_img.putdata([0, 1] * 6)
    palette_img.save(tmp_path / "a" / "pal.png")
    folder = ImageFolder(tmp_path)
    images = {p.name: folder[i][0] for i, (p, _) in enumerate(folder.samples)}
    np.testing.assert_array_equal(images["gray.png"], np.stack([gray] * 3))
    np.testing.assert_array_equal(images["rgba.png"], rgba[..., :3].transpose(2, 0, 1))
    pal = images["pal.png"]
    assert pal.shape == (3, 3, 4)
    np.testing.assert_array_equal(pal[:, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(pal[:, 0, 1], [0, 0, 255])


def test_target_size_resizes_every_image(tmp_path):
    left_red = np.zeros((8, 10, 3), np.uint8)
    left_red[:, :5, 0] = 255
    left_red[:, 5:, 2] = 255
    save_rgb(tmp_path / "a" / "big.png", left_red)
    save_rgb(tmp_path / "b" / "small.png", np.full((3, 2, 3), 77, np.uint8))
    folder = ImageFolder(tmp_path, target_size=(4, 6))
    big, small = folder[0][0], folder[1][0]
    assert big.shape == small.shape == (3, 4, 6)
    np.testing.assert_array_equal(small, 77)  # a flat colour stays flat
    assert np.all(big[0, :, 0] == 255) and np.all(big[2, :, 0] == 0)    # red stays left
    assert np.all(big[2, :, -1] == 255) and np.all(big[0, :, -1] == 0)  # blue stays right
    assert ImageFolder(tmp_path, target_size=5)[0][0].shape == (3, 5, 5)


def test_mixed_sizes_without_target_size(tmp_path):
    save_rgb(tmp_path / "a" / "1.png", np.zeros((4, 4, 3), np.uint8))
    save_rgb(tmp_path / "a" / "2.png", np.zeros((5, 4, 3), np.uint8))
    folder = ImageFolder(tmp_path)
    folder[0]
    with pytest.raises(DatasetError, match=r"2\.png is 5x4.*target_size"):
        folder[1]


def test_unreadable_image_named(tmp_path):
    save_rgb(tmp_path / "a" / "good.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "broken.jpg").write_bytes(b"this is not a jpeg")
    folder = ImageFolder(tmp_path)
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.jpg"):
        folder[0]


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        ImageFolder(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.md").write_text("hi")
    with pytest.raises(DatasetError, match="holds no images"):
        ImageFolder(tmp_path)


def test_loader_and_to_arrays(tree):
    root, pixels = tree
    folder = ImageFolder(root)
    images, labels = folder.to_arrays()
    assert images.shape == (5, 3, 5, 6) and labels.dtype == np.int64
    x, y = next(iter(DataLoader(folder, batch_size=5)))
    np.testing.assert_allclose(to_numpy(x), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(y), labels)
    with pytest.raises(TypeError, match="indices must be integers"):
        folder["0"]


# ------------------------------------------------------------------ damaged files and decompression bombs

def _png_header_only(width, height) -> bytes:
    """A PNG that declares width x height 8-bit grey pixels but holds a few bytes of data: what a bomb looks like."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_decompression_bomb_refused_naming_the_file(tmp_path):
    save_rgb(tmp_path / "a" / "fine.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "zbomb.png").write_bytes(_png_header_only(40000, 40000))  # 1.6 billion pixels
    folder = ImageFolder(tmp_path)
    assert folder[0][0].shape == (3, 4, 4)
    with pytest.raises(DatasetError, match=r"refusing image .*zbomb\.png.*MAX_IMAGE_PIXELS"):
        folder[1]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, before the refusal
@pytest.mark.parametrize("pixels, limit", [(16, 10), (25, 10)], ids=["over-limit-warning", "over-twice-error"])
def test_both_pillow_bomb_levels_refused(tmp_path, monkeypatch, pixels, limit):
    # Pillow warns between MAX_IMAGE_PIXELS and twice that, and raises above; a warning must not let it through.
    side = int(pixels ** 0.5)
    save_rgb(tmp_path / "a" / "img.png", np.zeros((side, side, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DatasetError, match=r"img\.png.*decompression-bomb limit of 10 pixels"):
        ImageFolder(tmp_path)[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's way to switch the check off
    assert ImageFolder(tmp_path)[0][0].shape == (3, side, side)


FORMATS = [("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp"),
           ("PPM", "ppm")]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about some damaged TIFF tags, then decodes
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_damaged_images_give_dataset_error_naming_the_file(tmp_path_factory, fmt, data):
    """Any truncation or byte changes of a valid image: a uint8 (3, H, W) image or DatasetError naming the file."""
    pixels = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt[0])
    raw = bytearray(buffer.getvalue())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        # mostly the header (where sizes, offsets and counts live), sometimes anywhere
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            where = data.draw(st.integers(0, min(len(raw), 64) - 1) | st.integers(0, len(raw) - 1), label="at")
            raw[where] = data.draw(st.integers(0, 255), label="value")
    root = tmp_path_factory.mktemp("damaged")
    path = root / "c" / f"damaged.{fmt[1]}"
    path.parent.mkdir()
    path.write_bytes(bytes(raw))
    try:
        image, label = ImageFolder(root)[0]
    except DatasetError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[0] == 3 and label == 0


# ------------------------------------------------------------------ symbolic links

def _real(path) -> str:
    return os.path.realpath(path)


def _class_with_two_images(tmp_path):
    cat = tmp_path / "cat"
    save_rgb(cat / "a.png", np.zeros((2, 2, 3), np.uint8))
    save_rgb(cat / "sub" / "b.png", np.zeros((2, 2, 3), np.uint8))
    return cat


def _names(tmp_path):
    return [p.relative_to(tmp_path).as_posix() for p, _ in ImageFolder(tmp_path, classes=["cat"]).samples]


@pytest.mark.parametrize("link, target", [("sub/up", ".."), ("sub/self", "."), ("abs", "ABSOLUTE")])
def test_link_back_to_an_ancestor_is_not_followed(tmp_path, link, target):
    cat = _class_with_two_images(tmp_path)
    (cat / link).symlink_to(cat if target == "ABSOLUTE" else target, target_is_directory=True)
    assert _names(tmp_path) == ["cat/a.png", "cat/sub/b.png"]


def test_second_names_add_nothing_and_outside_folders_are_followed(tmp_path):
    cat = _class_with_two_images(tmp_path)
    (cat / "alias").symlink_to("sub", target_is_directory=True)              # a second name for a folder
    (cat / "again.png").symlink_to("sub/b.png")                              # a second name for an image
    save_rgb(tmp_path / "outside" / "o.png", np.zeros((2, 2, 3), np.uint8))
    (cat / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)  # a real folder elsewhere
    (cat / "ext2").symlink_to(tmp_path / "outside", target_is_directory=True)
    (cat / "loop.png").symlink_to("loop.png")                                # a link to itself: unreadable
    names = _names(tmp_path)
    assert names == ["cat/a.png", "cat/loop.png", "cat/ext/o.png", "cat/sub/b.png"]
    folder = ImageFolder(tmp_path, classes=["cat"])
    index = [p.name for p, _ in folder.samples].index("loop.png")
    with pytest.raises(DatasetError, match=r"cannot read image .*loop\.png"):
        folder[index]


@st.composite
def linked_trees(draw):
    """A class folder of a few real sub-folders and images plus links (to folders, ancestors included, and images)."""
    n_dirs = draw(st.integers(0, 4))
    parents = [draw(st.integers(0, i)) for i in range(n_dirs)]          # folder i+1 lives in folder parents[i]
    images = draw(st.lists(st.integers(0, n_dirs), max_size=5))          # the folder of each image
    dir_links = draw(st.lists(st.tuples(st.integers(0, n_dirs), st.integers(-1, n_dirs)), max_size=4))
    file_links = draw(st.lists(st.tuples(st.integers(0, n_dirs), st.integers(0, 10)), max_size=3))
    relative = draw(st.booleans())
    return parents, images, dir_links, file_links, relative


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=linked_trees())
def test_links_never_repeat_or_lose_an_image(tmp_path_factory, tree):
    parents, images, dir_links, file_links, relative = tree
    root = tmp_path_factory.mktemp("links")
    outside = root / "outside"                                           # target -1: a folder outside the class
    save_rgb(outside / "o.png", np.zeros((2, 2, 3), np.uint8))
    dirs = [root / "c"]
    for i, parent in enumerate(parents):
        dirs.append(dirs[parent] / f"d{i}")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    real_images = []
    for i, d in enumerate(images):
        real_images.append(dirs[d] / f"i{i}.png")
        save_rgb(real_images[-1], np.zeros((2, 2, 3), np.uint8))
    for k, (at, target) in enumerate(dir_links):
        goal = outside if target == -1 else dirs[target]
        (dirs[at] / f"l{k}").symlink_to(os.path.relpath(goal, dirs[at]) if relative else goal,
                                        target_is_directory=True)
    for k, (at, which) in enumerate(file_links):
        if real_images:
            (dirs[at] / f"f{k}.png").symlink_to(real_images[which % len(real_images)])
    # Reference: the real images reachable from the class folder, by graph search over real paths.
    reachable, seen, queue = set(), set(), [_real(dirs[0])]
    while queue:
        d = queue.pop()
        if d in seen:
            continue
        seen.add(d)
        for entry in os.scandir(d):
            if entry.is_dir():
                queue.append(_real(entry.path))
            else:
                reachable.add(_real(entry.path))
    if not reachable:
        with pytest.raises(DatasetError, match="holds no images"):
            ImageFolder(root, classes=["c"])
        return
    samples = [p for p, _ in ImageFolder(root, classes=["c"]).samples]
    assert len({_real(p) for p in samples}) == len(samples)              # never the same real image twice
    assert {_real(p) for p in samples} == reachable                        # and none lost
    for image in real_images:                                              # a real image keeps its own path
        assert image in samples
    assert samples == sorted(samples, key=lambda p: (str(p.parent), p.name))  # torchvision's order
