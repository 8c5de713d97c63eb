"""ImageFolder: a classification set stored as one sub-folder of images per class.

The layout of torchvision's ``ImageFolder`` and Keras' ``flow_from_directory``::

    root/cat/0001.png
    root/cat/more/0002.jpg        (sub-folders of a class folder are searched too)
    root/dog/0003.jpeg

Classes are the sub-folder names in sorted order (``classes[label]``), or the
ones you list. Images are read with Pillow when indexed, converted to RGB
(grayscale, palette and RGBA images alike) and returned channels-first as
uint8 ``(3, H, W)``, resized to ``target_size`` if given. Files whose
extension is not an image format are ignored.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from .base import DatasetError, DatasetNotFoundError, require_optional
from .transforms import pair

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")


def _pil_image():
    return require_optional("PIL.Image", "ImageFolder (reading image files)")


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    # sorted(os.walk(...)) orders folders by path, as torchvision does, so sample indices agree with it.
    files = []
    for dirpath, dirnames, filenames in sorted(os.walk(folder, followlinks=True)):
        if any(part.startswith(".") for part in pathlib.Path(dirpath).relative_to(folder).parts):
            continue
        files.extend(pathlib.Path(dirpath) / f for f in sorted(filenames)
                     if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return files


class ImageFolder:
    """Images in class sub-folders, indexed like a list: ``image, label = folder[i]``.

    Parameters
    ----------
    root : the folder holding one sub-folder per class.
    target_size : None, an int, or (height, width): resize every image to it
        (bilinear). Without it all images must have the same size.
    classes : optional list of class folder names to use, in this label order
        (default: all sub-folders, sorted).

    Attributes: ``classes`` (list of names), ``class_to_idx`` (name -> label),
    ``samples`` (list of (path, label)), ``targets`` (int64 labels).
    ``folder[i]`` returns (uint8 array (3, H, W), int label).
    ``to_arrays()`` reads everything into (uint8 (N, 3, H, W), int64 (N,)) for a fast DataLoader.
    """

    def __init__(self, root, target_size=None, classes=None):
        self.root = pathlib.Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"ImageFolder: {self.root} is not a folder")
        self.target_size = None if target_size is None else pair(target_size, "ImageFolder", "target_size")
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if classes is None:
            if not found:
                raise DatasetError(f"ImageFolder: {self.root} has no class sub-folders; expected root/<class>/<image>")
            classes = found
        else:
            classes = [str(c) for c in classes]
            missing = [c for c in classes if c not in found]
            if missing:
                raise DatasetError(f"ImageFolder: no folder for classes {missing} under {self.root} (found {found})")
            if len(set(classes)) != len(classes):
                raise ValueError(f"ImageFolder: classes {classes} contain duplicates")
        self.classes = list(classes)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = []
        for name in self.classes:
            files = _image_files(self.root / name)
            if not files:
                raise DatasetError(f"ImageFolder: class folder {self.root / name} holds no images "
                                   f"(recognised extensions: {', '.join(IMAGE_EXTENSIONS)})")
            self.samples.extend((path, self.class_to_idx[name]) for path in files)
        self.targets = np.array([label for _, label in self.samples], dtype=np.int64)
        self._size = None  # (width, height) of the first image, the size all must share without target_size

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, path: pathlib.Path) -> np.ndarray:
        Image = _pil_image()
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode != "RGB":
                    img = img.convert("RGBA").convert("RGB") if img.mode == "P" else img.convert("RGB")
                if self.target_size is not None:
                    h, w = self.target_size
                    if img.size != (w, h):
                        img = img.resize((w, h), Image.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as err:  # PIL.UnidentifiedImageError is an OSError
            raise DatasetError(f"ImageFolder: cannot read image {path}: {type(err).__name__}: {err}") from err
        if self.target_size is None:
            if self._size is None:
                self._size = array.shape[:2]
            elif array.shape[:2] != self._size:
                raise DatasetError(f"ImageFolder: {path} is {array.shape[0]}x{array.shape[1]} (HxW) but earlier "
                                   f"images are {self._size[0]}x{self._size[1]}; pass target_size=(H, W) "
                                   "to resize them all to one size")
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"ImageFolder indices must be integers, got {type(index).__name__}")
        path, label = self.samples[index]
        return self._read(path), label

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels in memory: (uint8 (N, 3, H, W), int64 (N,))."""
        first = self[0][0]
        images = np.empty((len(self), *first.shape), dtype=np.uint8)
        images[0] = first
        for i in range(1, len(self)):
            images[i] = self[i][0]
        return images, self.targets.copy()

    def __repr__(self):
        return (f"ImageFolder(root={str(self.root)!r}, {len(self)} images, {len(self.classes)} classes, "
                f"target_size={self.target_size})")
