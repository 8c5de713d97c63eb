"""Named training augmentations, as the command line's ``--augment`` offers them.

* ``"none"``: the images as they are;
* ``"flip"``: a horizontal flip with probability 1/2;
* ``"crop-flip"``: pad 4 pixels of zeros, crop back to size at a random offset, flip (the classic
  CIFAR-10 augmentation);
* ``"translate-flip"``: airbench's augmentation: a random translation by up to 2 pixels, the border
  filled by reflecting the image (``RandomCrop(padding=2, padding_mode="reflect")``), then a flip;
* ``"translate-altflip"``: the same translations, and airbench's alternating flip
  (:class:`~minigru.data.AlternatingFlip`: each image mirrored in every other epoch, starting from a
  half drawn with ``seed``);
* ``"keras"``: the set of Keras' ``ImageDataGenerator`` in the row-GRU source document: a
  random rotation (up to 15 degrees), shift (up to 10% of each side), shear (up to 10 degrees)
  and zoom (0.9 to 1.1) in one bilinear warp (:class:`~minigru.data.RandomAffine`), then a flip.
  Uncovered pixels are 0 (black: the images are scaled to [0, 1] first), where Keras repeats the
  nearest edge pixel by default.
"""
from __future__ import annotations

from .affine import RandomAffine
from .transforms import AlternatingFlip, RandomCrop, RandomHorizontalFlip, pair

__all__ = ["AUGMENTATIONS", "augmentation"]

AUGMENTATIONS = ("none", "flip", "crop-flip", "translate-flip", "translate-altflip", "keras")


def augmentation(name: str, image_size, seed: int = 0) -> list:
    """The transforms of the augmentation ``name`` (one of :data:`AUGMENTATIONS`) for images of ``image_size``;
    ``seed`` draws which images an alternating flip mirrors first."""
    h, w = pair(image_size, "augmentation", "image_size")
    if name == "none":
        return []
    if name == "flip":
        return [RandomHorizontalFlip()]
    if name == "crop-flip":
        return [RandomCrop((h, w), padding=4), RandomHorizontalFlip()]
    if name == "translate-flip":
        return [RandomCrop((h, w), padding=2, padding_mode="reflect"), RandomHorizontalFlip()]
    if name == "translate-altflip":
        return [RandomCrop((h, w), padding=2, padding_mode="reflect"), AlternatingFlip(seed)]
    if name == "keras":
        return [RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10),
                RandomHorizontalFlip()]
    raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
