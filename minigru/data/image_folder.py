"""ImageFolder: a classification set stored as one sub-folder of images per class.

The layout of torchvision's ``ImageFolder`` and Keras' ``flow_from_directory``::

    root/cat/0001.png
    root/cat/more/0002.jpg        (sub-folders of a class folder are searched too)
    root/dog/0003.jpeg

Classes are the sub-folder names in sorted order (``classes[label]``), or the
ones you list. Images are read with Pillow when indexed, converted to RGB
(grayscale, palette and RGBA images alike) and returned channels-first as
uint8 ``(3, H, W)``, resized to ``target_size`` if given. Files whose
extension is not an image format, and hidden files and folders (names starting
with ``.``), are ignored. A file Pillow cannot decode, and an image over
Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89
million pixels), raise :class:`~minigru.data.DatasetError` naming the file.

Symbolic links to folders and to images are followed, but every real folder is
searched once and every real image is listed once per class: a link whose
target is already part of the class (a loop back to a parent folder, a second
name for a folder or an image) adds nothing. Where one real image can be
reached by several paths, the path through the fewest links is the one kept
(between paths with as many links, the first in sample order). Hard links are
separate files.
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


def _list_folder(directory: pathlib.Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:  # silently skipping a folder would silently drop its images
        raise DatasetError(f"ImageFolder: cannot list folder {directory}: {err.strerror or err}") from err


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links
    except OSError:  # a link loop between two links (ELOOP): not a folder; reading it fails and names it
        return False


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The images under ``folder``, each real file once (see the module docstring), in sample order.

    Sample order is torchvision's: folders sorted by path, files sorted by name in each.
    Folders are searched in rounds: round 0 walks the real tree without following links;
    round k follows the folder links met in round k-1. A folder whose real path was
    already searched is skipped, so a link back to an ancestor ends there, and every
    image is first met by a path through the fewest links.
    """
    searched = set()   # real paths of the folders searched
    candidates = []    # (links on the path, folder, file name, real path of the file)
    round_, start = 0, [folder]
    while start:
        next_round = []
        for top in start:
            stack = [top]
            while stack:
                directory = stack.pop()
                real_dir = os.path.realpath(directory)
                if real_dir in searched:
                    continue
                searched.add(real_dir)
                subfolders = []
                for entry in _list_folder(directory):
                    if _is_dir(entry):
                        (next_round if entry.is_symlink() else subfolders).append(pathlib.Path(entry.path))
                    elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                        linked = entry.is_symlink()
                        real = os.path.realpath(entry.path) if linked else os.path.join(real_dir, entry.name)
                        candidates.append((round_ + linked, directory, entry.name, real))
                stack.extend(reversed(subfolders))
        round_, start = round_ + 1, sorted(next_round)

    def sample_order(c):
        return str(c[1]), c[2]

    kept, claimed = set(), set()
    for candidate in sorted(candidates, key=lambda c: (c[0], *sample_order(c))):
        if candidate[3] not in claimed:
            claimed.add(candidate[3])
            kept.add((candidate[1], candidate[2]))
    return [directory / name for _, directory, name, _ in sorted(candidates, key=sample_order)
            if (directory, name) in kept]


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
        bomb = (f"ImageFolder: refusing image {path}: it is over Pillow's decompression-bomb limit of "
                f"{Image.MAX_IMAGE_PIXELS or 0:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); if it is a genuine image, "
                "raise that limit (or shrink the file) first")
        try:
            with Image.open(path) as img:
                # Pillow only warns between MAX_IMAGE_PIXELS and twice that (it raises above): refuse both,
                # by checking the size here rather than by changing the process-wide warning filters.
                limit = Image.MAX_IMAGE_PIXELS
                if limit is not None and img.size[0] * img.size[1] > limit:
                    raise DatasetError(f"{bomb} (it is {img.size[0]}x{img.size[1]} pixels)")
                img.load()
                if img.mode != "RGB":
                    img = img.convert("RGBA").convert("RGB") if img.mode == "P" else img.convert("RGB")
                if self.target_size is not None:
                    h, w = self.target_size
                    if img.size != (w, h):
                        img = img.resize((w, h), Image.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except DatasetError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # the warning: as an error
            raise DatasetError(f"{bomb} ({err})") from err
        except Exception as err:  # Pillow's decoders raise many types on damaged files (OSError, struct.error,
            # EOFError, IndexError, ...): each is this file's fault, and the user must learn which file it is
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
