"""Random affine warps (rotation, shift, shear, zoom) with bilinear sampling, vectorised over the batch.

Coordinates are in pixels, ``x`` to the right (columns) and ``y`` *down*
(rows), with pixel centres on integers and ``c = ((W-1)/2, (H-1)/2)`` the
image centre. A warp moves the content of input point ``p`` to output point
``p'`` (docs/user_guide.md, "Affine warps and bilinear sampling")::

    p' - c = A (p - c) + t,     A = s R(theta) S(phi_x, phi_y)                          (A1)
    R(theta) = [[cos theta, sin theta], [-sin theta, cos theta]]   (counter-clockwise on screen)
    S = [[1, tan phi_x], [tan phi_y, 1]]                           (x' = x + tan(phi_x) y, ...)

The output is computed by *sampling*: each output pixel asks where it came from, ::

    p = c + A^-1 (p' - c - t)  =  M [x', y', 1]^T,   M = [A^-1 | c - A^-1 (c + t)]      (A2)
    A^-1 = [[a11, -a01], [-a10, a00]] / (a00 a11 - a01 a10)                            (A3)

and reads the input there by bilinear interpolation, with ``x0 = floor(x)``,
``y0 = floor(y)``, ``alpha = x - x0``, ``beta = y - y0``::

    I'(p') = (1-alpha)(1-beta) I[y0, x0] + alpha (1-beta) I[y0, x0+1]
           + (1-alpha) beta I[y0+1, x0] + alpha beta I[y0+1, x0+1]                     (A4)

where neighbours outside the image read ``fill`` (A5): the input is padded by
one pixel of ``fill`` and coordinates are clamped into that frame, so a sample
beyond the border is exactly ``fill`` and one within a pixel of it blends.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..backend import get_array_module, to_numpy
from .transforms import Transform, Workspace, check_batch

__all__ = ["affine_matrices", "warp_affine", "RandomAffine", "RandomRotation", "RandomShift", "RandomShear",
           "RandomZoom"]


def affine_matrices(height: int, width: int, angle=None, scale=None, shear_x=None, shear_y=None,
                    translate_x=None, translate_y=None) -> np.ndarray:
    """Per-sample sampling matrices ``M`` of eq. (A2), on the host.

    Every argument after ``width`` is None (no such component) or an (N,)
    array: ``angle`` in degrees (counter-clockwise), ``scale`` (> 1 enlarges
    the content), ``shear_x``/``shear_y`` in degrees, ``translate_x``/
    ``translate_y`` in pixels (right, down). Returns float64 (N, 2, 3) such that
    the input point sampled for output pixel (x', y') is ``M @ [x', y', 1]``.
    """
    given = [a for a in (angle, scale, shear_x, shear_y, translate_x, translate_y) if a is not None]
    n = len(np.atleast_1d(given[0])) if given else 1

    def param(values, default):
        values = np.zeros(n) + default if values is None else np.asarray(values, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"affine_matrices: every parameter must have shape ({n},), got {values.shape}")
        return values

    theta = np.deg2rad(param(angle, 0.0))
    s = param(scale, 1.0)
    tan_x, tan_y = np.tan(np.deg2rad(param(shear_x, 0.0))), np.tan(np.deg2rad(param(shear_y, 0.0)))
    t = np.stack([param(translate_x, 0.0), param(translate_y, 0.0)], axis=1)          # (N, 2)
    cos, sin = np.cos(theta), np.sin(theta)
    rotation = np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1)     # (N, 2, 2)
    shear = np.stack([np.stack([np.ones(n), tan_x], 1), np.stack([tan_y, np.ones(n)], 1)], 1)
    A = s[:, None, None] * (rotation @ shear)                                        # (A1)
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    if np.any(np.abs(det) < 1e-12):
        raise ValueError("affine_matrices: a warp is singular (zero scale, or x and y shears that flatten "
                         "the image); keep scale > 0 and tan(shear_x) * tan(shear_y) < 1")
    A_inv = np.stack([np.stack([A[:, 1, 1], -A[:, 0, 1]], 1),
                      np.stack([-A[:, 1, 0], A[:, 0, 0]], 1)], 1) / det[:, None, None]  # (A3)
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    offset = centre - np.einsum("nij,nj->ni", A_inv, centre + t)                     # (A2)
    return np.concatenate([A_inv, offset[:, :, None]], axis=2)


def _take(xp, flat, index, out):
    """``out[...] = flat[index]`` without allocating."""
    if xp.__name__ == "numpy":
        # mode="clip" skips the bounds check and the buffered copy that mode="raise" makes;
        # the indices are in range by construction (clamped coordinates).
        flat.take(index, out=out, mode="clip")
    else:
        xp.take(flat, index, out=out)


def warp_affine(x, matrices, fill: float = 0.0, workspace: Workspace | None = None):
    """Bilinear affine warp of every sample of a batch (eqs. A2, A4, A5).

    x: (N, C, H, W) floating, NumPy or CuPy. matrices: (N, 2, 3) sampling
    matrices ``M`` (from :func:`affine_matrices`), host or backend. Output
    pixel (x', y') of sample n is the input of sample n read at
    ``M[n] @ [x', y', 1]`` by bilinear interpolation, ``fill`` outside.
    Returns a new (N, C, H, W) array of ``x``'s dtype and backend.
    """
    check_batch(x, "warp_affine")
    xp = get_array_module(x)
    N, C, H, W = x.shape
    M = to_numpy(matrices)
    if M.shape != (N, 2, 3):
        raise ValueError(f"warp_affine: matrices must have shape ({N}, 2, 3) for a batch of {N}, got {M.shape}")
    ws = workspace if workspace is not None else Workspace()
    P, Hp, Wp = H * W, H + 2, W + 2
    dtype = x.dtype
    # +1 on the offsets: coordinates index the padded image (A5), whose pixel (0, 0) is the border.
    m = xp.asarray(M.reshape(N, 6) + np.array([0, 0, 1, 0, 0, 1]), dtype=dtype)[:, :, None]  # (N, 6, 1)
    grid_x = xp.asarray(np.tile(np.arange(W), H)[None], dtype=dtype)                        # (1, P)
    grid_y = xp.asarray(np.repeat(np.arange(H), W)[None], dtype=dtype)

    xs, ys, tmp = (ws.get(xp, name, (N, P), dtype) for name in ("xs", "ys", "tmp"))
    xp.multiply(m[:, 0], grid_x, out=xs)
    xp.multiply(m[:, 1], grid_y, out=tmp)
    xs += tmp
    xs += m[:, 2]
    xp.multiply(m[:, 3], grid_x, out=ys)
    xp.multiply(m[:, 4], grid_y, out=tmp)
    ys += tmp
    ys += m[:, 5]
    xp.clip(xs, 0, W + 1, out=xs)  # beyond the border frame every neighbour is fill anyway
    xp.clip(ys, 0, H + 1, out=ys)

    x0, y0 = ws.get(xp, "x0", (N, P), np.intp), ws.get(xp, "y0", (N, P), np.intp)
    xp.copyto(x0, xs, casting="unsafe")  # truncation is floor: coordinates are >= 0 here
    xp.copyto(y0, ys, casting="unsafe")
    xp.minimum(x0, W, out=x0)  # keep x0 + 1 inside the padded image at the far edge
    xp.minimum(y0, H, out=y0)
    xs -= x0  # now alpha
    ys -= y0  # now beta
    alpha, beta = xs, ys

    # Flat indices of the four neighbours within one channel plane of the padded batch.
    i00 = y0
    i00 *= Wp
    i00 += x0
    i00 += xp.arange(N)[:, None] * (Hp * Wp)
    i01 = x0
    xp.add(i00, 1, out=i01)
    i10, i11 = ws.get(xp, "i10", (N, P), np.intp), ws.get(xp, "i11", (N, P), np.intp)
    xp.add(i00, Wp, out=i10)
    xp.add(i10, 1, out=i11)

    # Channel-major padded copy: each channel is one contiguous plane, gathered with the same indices.
    padded = ws.get(xp, "padded", (C, N, Hp, Wp), dtype, fill=float(fill))
    padded[:, :, 1:-1, 1:-1] = x.transpose(1, 0, 2, 3)
    g00, g01, g10, g11 = (ws.get(xp, name, (N, P), dtype) for name in ("g00", "g01", "g10", "g11"))
    out = xp.empty((N, C, P), dtype=dtype)
    for c in range(C):  # a loop over channels (3), not over samples or pixels
        plane = padded[c].reshape(-1)
        _take(xp, plane, i00, g00)
        _take(xp, plane, i01, g01)
        _take(xp, plane, i10, g10)
        _take(xp, plane, i11, g11)
        # (A4) as two linear interpolations along x, then one along y.
        g01 -= g00
        g01 *= alpha
        g00 += g01   # top row
        g11 -= g10
        g11 *= alpha
        g10 += g11   # bottom row
        g10 -= g00
        g10 *= beta
        xp.add(g00, g10, out=out[:, c])
    return out.reshape(N, C, H, W)


def _range(value, who: str, name: str, symmetric_about: float = 0.0):
    """A number v -> (about - v, about + v); a pair -> itself; None -> None."""
    if value is None:
        return None
    if isinstance(value, numbers.Real):
        if value < 0:
            raise ValueError(f"{who}: {name} must be non-negative, got {value}")
        return (symmetric_about - float(value), symmetric_about + float(value))
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ValueError(f"{who}: {name} range ({lo}, {hi}) has low > high")
    return lo, hi


class RandomAffine(Transform):
    """One random affine warp per sample (eq. A1), applied with bilinear sampling.

    degrees : rotation angle range in degrees (a number d means (-d, d));
        positive angles turn the content counter-clockwise on screen.
    translate : (a, b): horizontal shift uniform in (-a W, a W), vertical in (-b H, b H) pixels.
    scale : (lo, hi) zoom factor range; > 1 enlarges the content.
    shear : x-shear angle range in degrees (a number s means (-s, s)), or
        (x_lo, x_hi, y_lo, y_hi) for both directions.
    fill : value of the pixels that come from outside the image.

    Per-sample parameters are drawn on the host in the order rotation,
    translation, scale, shear (only those that are set).
    """

    def __init__(self, degrees=None, translate=None, scale=None, shear=None, fill: float = 0.0):
        who = type(self).__name__
        self.degrees = _range(degrees, who, "degrees")
        if self.degrees == (0.0, 0.0):
            self.degrees = None  # no rotation: draw nothing for it
        self.translate = None if translate is None else tuple(float(v) for v in translate)
        if self.translate is not None and (len(self.translate) != 2 or min(self.translate) < 0):
            raise ValueError(f"{who}: translate must be two non-negative fractions (a, b), got {translate!r}")
        self.scale = _range(scale, who, "scale", symmetric_about=1.0) if scale is not None else None
        if self.scale is not None and self.scale[0] <= 0:
            raise ValueError(f"{who}: scale factors must be positive, got {self.scale}")
        shear_values = shear if shear is None or isinstance(shear, numbers.Real) else tuple(shear)
        if shear_values is not None and not isinstance(shear_values, numbers.Real) and len(shear_values) == 4:
            self.shear_x = _range(shear_values[:2], who, "shear x")
            self.shear_y = _range(shear_values[2:], who, "shear y")
        else:
            self.shear_x, self.shear_y = _range(shear_values, who, "shear"), None
        for rng_ in (self.shear_x, self.shear_y):
            if rng_ is not None and max(abs(v) for v in rng_) >= 90:
                raise ValueError(f"{who}: shear angles must lie strictly between -90 and 90 degrees, got {rng_}")
        if self.shear_x and self.shear_y:
            worst = np.tan(np.deg2rad(max(map(abs, self.shear_x)))) * np.tan(np.deg2rad(max(map(abs, self.shear_y))))
            if worst >= 1:
                raise ValueError(f"{who}: x and y shears this large can flatten the image "
                                 "(tan(shear_x) * tan(shear_y) must stay below 1)")
        self.fill = float(fill)
        self._workspace = Workspace()

    def sample_matrices(self, n: int, height: int, width: int, rng) -> np.ndarray:
        """Draw ``n`` random warps and return their sampling matrices (n, 2, 3) (eq. A2)."""
        def draw(bounds):
            return None if bounds is None else rng.uniform(bounds[0], bounds[1], size=n)

        angle = draw(self.degrees)
        tx = ty = None
        if self.translate is not None:
            a, b = self.translate
            tx, ty = draw((-a * width, a * width)), draw((-b * height, b * height))
        return affine_matrices(height, width, angle=angle if angle is not None else np.zeros(n),
                               scale=draw(self.scale), shear_x=draw(self.shear_x), shear_y=draw(self.shear_y),
                               translate_x=tx, translate_y=ty)

    def __call__(self, batch, rng):
        check_batch(batch, type(self).__name__)
        N, _, H, W = batch.shape
        return warp_affine(batch, self.sample_matrices(N, H, W, rng), self.fill, self._workspace)

    def _repr_args(self):
        args = {"degrees": self.degrees, "translate": self.translate, "scale": self.scale,
                "shear_x": self.shear_x, "shear_y": self.shear_y, "fill": self.fill}
        return {k: v for k, v in args.items() if v is not None}


class RandomRotation(RandomAffine):
    """Rotate each sample by an angle uniform in ``(-degrees, degrees)`` (or the given (lo, hi))."""

    def __init__(self, degrees, fill: float = 0.0):
        super().__init__(degrees=degrees, fill=fill)


class RandomShift(RandomAffine):
    """Shift each sample by up to ``width_shift * W`` pixels horizontally and ``height_shift * H`` vertically
    (Keras' width/height_shift_range as fractions; sub-pixel shifts are interpolated)."""

    def __init__(self, width_shift: float = 0.1, height_shift: float = 0.1, fill: float = 0.0):
        super().__init__(translate=(width_shift, height_shift), fill=fill)


class RandomShear(RandomAffine):
    """Shear each sample horizontally by an angle uniform in ``(-degrees, degrees)`` (or the given range;
    four values shear in x and y)."""

    def __init__(self, degrees, fill: float = 0.0):
        super().__init__(shear=degrees, fill=fill)


class RandomZoom(RandomAffine):
    """Scale each sample about its centre by a factor uniform in ``(1 - zoom, 1 + zoom)`` (or the given
    (lo, hi)); factors > 1 zoom in (enlarge the content)."""

    def __init__(self, zoom=0.1, fill: float = 0.0):
        super().__init__(scale=_range(zoom, "RandomZoom", "zoom", symmetric_about=1.0), fill=fill)
