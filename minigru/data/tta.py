"""Test-time augmentation (TTA): fixed views of a test batch whose class scores are averaged.

A *view* is a deterministic batch transform ``view(x) -> x'`` on ``(N, C, H, W)``
images (NumPy or CuPy, the result on the same backend). Evaluation with views
``v_1 .. v_k`` and weights ``w_1 .. w_k`` scores each batch as::

    scores(x) = sum_i w_i model(v_i(x)) / sum_i w_i

which suits outputs that should not change under the views (class scores;
not dense predictions such as next frames). :func:`tta_views` names the usual
sets: ``"flip"`` (the image and its mirror, equal weights) and
``"flip-translate"`` (airbench's: the image and its mirror with weight 1/4
each, and both shifted one pixel diagonally each way, reflected at the
border, mirrored or not, 1/8 each).
"""
from __future__ import annotations

from ..backend import get_array_module
from .transforms import Compose, Transform, check_batch

__all__ = ["Identity", "HorizontalFlip", "Translate", "tta_views", "TTA_CHOICES"]


class Identity(Transform):
    """The batch itself. Evaluation keeps the score of this view alone too (the score without TTA)."""

    def __call__(self, batch, rng=None):
        return batch


class HorizontalFlip(Transform):
    """Every image mirrored left-right (a new array)."""

    def __call__(self, batch, rng=None):
        check_batch(batch, "HorizontalFlip", need_float=False)
        return batch[..., ::-1].copy()


class Translate(Transform):
    """Shift the content ``dy`` pixels down and ``dx`` right; the uncovered border is reflected.

    With ``p = max(|dy|, |dx|)`` the batch is padded by ``p`` pixels (mirror
    reflection without repeating the edge, as torch's ``'reflect'``) and the
    window starting at ``(p - dy, p - dx)`` is cut out, so output pixel
    ``(i, j)`` holds input pixel ``(i - dy, j - dx)``.
    """

    def __init__(self, dy: int, dx: int):
        self.dy, self.dx = int(dy), int(dx)

    def __call__(self, batch, rng=None):
        check_batch(batch, "Translate", need_float=False)
        p = max(abs(self.dy), abs(self.dx))
        if p == 0:
            return batch.copy()
        H, W = batch.shape[2:]
        if p >= min(H, W):
            raise ValueError(f"Translate: a shift of {p} pixels needs images larger than {H}x{W}")
        xp = get_array_module(batch)
        padded = xp.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
        top, left = p - self.dy, p - self.dx
        return xp.ascontiguousarray(padded[:, :, top:top + H, left:left + W])

    def _repr_args(self):
        return {"dy": self.dy, "dx": self.dx}


TTA_CHOICES = ("none", "flip", "flip-translate")


def tta_views(name: str):
    """``(views, weights)`` of a named TTA set (``TTA_CHOICES``); ``"none"`` gives ``(None, None)``."""
    if name == "none":
        return None, None
    if name == "flip":
        return [Identity(), HorizontalFlip()], [1.0, 1.0]
    if name == "flip-translate":
        views = [Identity(), HorizontalFlip()]
        weights = [2.0, 2.0]
        for shift in (1, -1):
            views += [Translate(shift, shift), Compose([Translate(shift, shift), HorizontalFlip()])]
            weights += [1.0, 1.0]
        return views, weights
    raise ValueError(f"unknown TTA set {name!r}; choose one of {', '.join(TTA_CHOICES)}")

