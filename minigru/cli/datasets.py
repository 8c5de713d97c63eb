"""The data sets of ``minigru train`` and ``evaluate``: CIFAR-10, generated shapes, or your own image folder.

``--dataset folder --data DIR`` reads images in class sub-folders (Keras'
``flow_from_directory`` layout, :class:`~minigru.data.ImageFolder`)::

    DIR/train/<class>/*.jpg  and  DIR/test/<class>/*.jpg    # when both exist: the given split
    DIR/<class>/*.jpg                                       # otherwise: a held-out test split

Without ``train/`` and ``test/`` sub-folders, a fraction ``test_split`` of the
images is held out for testing, drawn with the run's seed (the same images
every time, so ``evaluate`` scores the same ones). Every image is resized
(bilinear) to the model's input size, ``image_size`` of its arguments.
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import numpy as np

from ..data import DatasetNotFoundError, ImageFolder, data_root, load_cifar10, make_shapes, random_split
from .common import CLIError

__all__ = ["Data", "load_data", "folder_classes", "channel_stats", "describe_folder", "SYNTHETIC_TRAIN",
           "SYNTHETIC_TEST"]

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 5000, 1000   # default size of the generated data set


@dataclass
class Data:
    """A run's images: ``train`` and ``test`` (uint8 (N, C, H, W), int64 (N,)) pairs, the class names,
    and ``folder``, the absolute data folder they came from (None for generated data)."""
    train: tuple | None
    test: tuple
    classes: list
    folder: str | None


def _split_folders(root: pathlib.Path):
    """(train folder, test folder or None): ``root/train`` and ``root/test`` when both exist, else (root, None)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root / "train", root / "test"
    return root, None


def _folder_root(path) -> pathlib.Path:
    if path is None:
        raise CLIError("--dataset folder needs --data DIR: a folder with one sub-folder of images per class "
                       "(or train/ and test/ folders holding such sub-folders)")
    return pathlib.Path(path).expanduser().resolve()


def folder_classes(path) -> list:
    """The class names of an image folder (its class sub-folders, sorted), without reading any image."""
    train_dir, _ = _split_folders(_folder_root(path))
    return ImageFolder(train_dir).classes


def _read_all(dataset) -> tuple:
    """Every image and label of an ImageFolder or a Subset of one: (uint8 (N, 3, H, W), int64 (N,))."""
    first = dataset[0][0]
    images = np.empty((len(dataset),) + first.shape, dtype=np.uint8)
    labels = np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        images[i], labels[i] = dataset[i]
    return images, labels


def _load_folder(path, image_size, test_split: float, seed: int, need_train: bool):
    """(train or None, test, classes, folder). Files are listed first and only the images needed are
    read, so ``evaluate`` reads the test images alone."""
    root = _folder_root(path)
    train_dir, test_dir = _split_folders(root)
    train_folder = ImageFolder(train_dir, target_size=image_size)
    if test_dir is not None:
        train, test = train_folder, ImageFolder(test_dir, target_size=image_size, classes=train_folder.classes)
    else:
        n = len(train_folder)
        n_test = int(round(test_split * n))
        if not 1 <= n_test < n:
            raise CLIError(f"--test-split {test_split} of {n} images in {root} leaves no test or no "
                           "training image; change --test-split or add train/ and test/ sub-folders")
        train, test = random_split(train_folder, [n - n_test, n_test], seed=seed)   # Subsets: nothing read yet
    return _read_all(train) if need_train else None, _read_all(test), train_folder.classes, str(root)


def load_data(config, data_path=None, download=False, need_train=True) -> Data:
    """The run's data, limits applied. ``data_path`` is the ``--data`` folder; without it, the folder
    stored in the run's config (``config["data"]``), then the default. With ``need_train=False``
    an image folder's training images are not read (``train`` may then be None).

    Data that is not found raises a CLIError that says where it was looked for and names ``--data``.
    """
    given = data_path is not None
    data_path = data_path if given else config.get("data")
    try:
        return _load(config, data_path, download, need_train)
    except DatasetNotFoundError as err:
        where = "--data" if given else (f"the run's data folder {data_path!r}" if data_path else "the default folder")
        raise CLIError(f"{err} (looked in {where}; give the data folder with --data DIR)") from None


def _load(config, data_path, download, need_train) -> Data:
    image_size = config["model_args"]["image_size"]
    if config["dataset"] == "cifar10":
        data = load_cifar10(data_path, download=download, progress=True)
        train, test, classes = data.train, data.test, data.classes
        folder = str(data_root(data_path).resolve())
    elif config["dataset"] == "folder":
        train, test, classes, folder = _load_folder(data_path, image_size, config["test_split"], config["seed"],
                                                    need_train)
    else:
        n_train = config["limit_train"] or SYNTHETIC_TRAIN
        n_test = config["limit_test"] or SYNTHETIC_TEST
        data = make_shapes(n_train, image_size=image_size[0], seed=config["seed"], n_test=n_test)
        train, test, classes, folder = data.train, data.test, data.classes, None
    if config["limit_train"] and train is not None:
        train = (train[0][:config["limit_train"]], train[1][:config["limit_train"]])
    if config["limit_test"]:
        test = (test[0][:config["limit_test"]], test[1][:config["limit_test"]])
    return Data(train, test, list(classes), folder)


def channel_stats(images) -> tuple:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the [0, 1] scale (one channel at a time)."""
    means, stds = [], []
    for c in range(images.shape[1]):
        channel = images[:, c].astype(np.float32) / 255.0
        means.append(float(channel.mean(dtype=np.float64)))
        stds.append(float(channel.std(dtype=np.float64)) or 1.0)
    return means, stds


def describe_folder(folder) -> str:
    """A data folder as the run header shows it (relative to the current folder when inside it)."""
    if folder is None:
        return "generated"
    try:
        relative = os.path.relpath(folder)
    except ValueError:  # another drive (Windows)
        return folder
    return relative if not relative.startswith("..") else folder
