"""Data for minigru: CIFAR-10, image folders, batch augmentation, a reproducible DataLoader, synthetic sets.

Quick start::

    from minigru.data import load_cifar10, DataLoader, Compose, RandomCrop, RandomHorizontalFlip

    data = load_cifar10()                                   # uint8 (50000, 3, 32, 32), int64 labels
    train = DataLoader(data.train, batch_size=128, shuffle=True, seed=0,
                       transform=Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()]))
    for x, y in train:                                      # x float32 in [0, 1] on the current backend
        ...

Offline, :func:`make_shapes` gives a SYNTHETIC set in the same format.
Importing this package needs only NumPy; pooch (downloads), Pillow
(ImageFolder) and tqdm (progress bars) are imported when first used
(``pip install 'minigru[train]'``).
"""
from .affine import (RandomAffine, RandomRotation, RandomShear, RandomShift, RandomZoom, affine_matrices,
                     warp_affine)
from .augment import AUGMENTATIONS, augmentation
from .base import ClassificationData, DatasetError, DatasetNotFoundError, UnsafeDataError, data_root
from .cifar import CIFAR10_CLASSES, CIFAR10_MD5, CIFAR10_URL, load_cifar10
from .image_folder import ImageFolder
from .loader import DataLoader, Subset, random_split, train_val_split
from .synthetic import SHAPE_NAMES, make_moving_shapes, make_shapes
from .transforms import AlternatingFlip, Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToFloat, Transform
from .tta import TTA_CHOICES, HorizontalFlip, Identity, Translate, tta_views

__all__ = [
    "load_cifar10", "ClassificationData", "CIFAR10_URL", "CIFAR10_MD5", "CIFAR10_CLASSES", "data_root",
    "DatasetError", "DatasetNotFoundError", "UnsafeDataError",
    "ImageFolder",
    "Transform", "Compose", "ToFloat", "Normalize", "RandomHorizontalFlip", "AlternatingFlip", "RandomCrop",
    "AUGMENTATIONS", "augmentation",
    "RandomAffine", "RandomRotation", "RandomShift", "RandomShear", "RandomZoom", "affine_matrices", "warp_affine",
    "Identity", "HorizontalFlip", "Translate", "tta_views", "TTA_CHOICES",
    "DataLoader", "Subset", "random_split", "train_val_split",
    "make_shapes", "make_moving_shapes", "SHAPE_NAMES",
]

# CIFAR-10's usual per-channel statistics (training set, [0, 1] scale), for Normalize(CIFAR10_MEAN, CIFAR10_STD).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
__all__ += ["CIFAR10_MEAN", "CIFAR10_STD"]
