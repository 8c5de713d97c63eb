"""ImageFolder: class folders, colour modes, resizing, ignored files and clear errors."""
import numpy as np
import pytest

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
