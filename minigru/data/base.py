"""Shared pieces of :mod:`minigru.data`: the return type of image classification sets, errors, paths.

Every loader of a classification set (:func:`~minigru.data.load_cifar10`,
:func:`~minigru.data.make_shapes`) returns the same small named tuple,
:class:`ClassificationData`, so the code that trains on one trains on the other.
"""
from __future__ import annotations

import importlib
import os
import pathlib
from typing import NamedTuple

import numpy as np

__all__ = ["ClassificationData", "DatasetError", "UnsafeDataError", "DatasetNotFoundError",
           "data_root", "require_optional"]

_TRAIN_EXTRA = "pip install 'minigru[train]'"


class DatasetError(ValueError):
    """A data file is malformed, truncated, or not what its name says (the message names the file)."""


class UnsafeDataError(DatasetError):
    """A data file tried something a data file must never do (a pickle naming ``os.system``,
    an archive member that would land outside the target folder); nothing of it was used."""


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a data set was found, and it could not (or may not) be downloaded.
    The message says where to put which files."""


class ClassificationData(NamedTuple):
    """An image classification set, split into training and test parts.

    Fields (``N`` training and ``M`` test images of ``C`` channels, ``H x W`` pixels)::

        train_images  uint8 (N, C, H, W)   pixel values 0..255, channels first (PyTorch's layout)
        train_labels  int64 (N,)           class indices 0..K-1
        test_images   uint8 (M, C, H, W)
        test_labels   int64 (M,)
        classes       tuple of K str        classes[label] is the name of class ``label``

    It is a named tuple, so both styles work::

        data = load_cifar10()
        x, y = data.train_images, data.train_labels
        x_train, y_train, x_test, y_test, classes = load_cifar10()

    ``(data.train_images, data.train_labels)`` is exactly what
    :class:`~minigru.data.DataLoader` takes.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple

    @property
    def train(self):
        """``(train_images, train_labels)``, ready for :class:`~minigru.data.DataLoader`."""
        return self.train_images, self.train_labels

    @property
    def test(self):
        """``(test_images, test_labels)``, ready for :class:`~minigru.data.DataLoader`."""
        return self.test_images, self.test_labels

    def __repr__(self):
        return (f"ClassificationData(train_images={_describe(self.train_images)}, "
                f"train_labels={_describe(self.train_labels)}, test_images={_describe(self.test_images)}, "
                f"test_labels={_describe(self.test_labels)}, classes={self.classes!r})")


def _describe(a) -> str:
    return f"<{a.dtype} array {tuple(a.shape)}>"


def data_root(root=None) -> pathlib.Path:
    """Folder where data sets are looked for and downloaded to.

    ``root`` if given, else ``$MINIGRU_DATA`` if set, else ``~/.cache/minigru``.
    """
    if root is None:
        root = os.environ.get("MINIGRU_DATA") or pathlib.Path("~/.cache/minigru")
    return pathlib.Path(root).expanduser()


def require_optional(module_name: str, feature: str):
    """Import an optional package (pooch, PIL, tqdm) when a feature first needs it.

    Raises ImportError naming the feature and the install command, so that
    ``import minigru.data`` itself never needs these packages.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        package = {"PIL": "Pillow"}.get(module_name.split(".")[0], module_name.split(".")[0])
        raise ImportError(f"{feature} needs the optional package {package!r}, which is not installed; "
                          f"install the training extras with: {_TRAIN_EXTRA}") from err
