"""The transform matrices of Winograd's F(2x2, 3x3) and F(4x4, 3x3), and how they are applied to whole arrays
(docs/derivations.md §W: eqs. W4, W10-W12).

F(m x m, 3 x 3) computes an m x m block of outputs of a 3x3 correlation from a t x t tile of the input,
t = m + 2, with t² multiplications (eq. W5; eq. W11 for m = 4)::

    Y = A^T [(G g G^T) ⊙ (B^T d B)] A      BT (t, t) input tile,  G (t, 3) filter,  AT (m, t) output

The matrices come from multiplying polynomials by evaluating them at t points and interpolating
(Toom-Cook): F(2, 3) uses the points 0, 1, -1 and infinity (eqs. W3, W4), F(4, 3) the points 0, ±1,
±2 and infinity (eqs. W10, W11). :data:`VARIANTS` holds both, by m; the kernels of
:mod:`minigru.functional.winograd` look a variant up at every call (so that a test can change a matrix).

Applying BT or AT to tiles is not done as matrix products but as additions of whole arrays, one array
per row or column of the tiles (:func:`apply_transform`): ``parts`` (t arrays, strided views of the
image) go in, t or m arrays come out. F(4, 3)'s matrices hold ±2, ±4, ±5 and ±8 besides ±1, and its
points come in pairs ±p, so :func:`transform_plan` first finds the usual factorisations: two rows for
+p and -p share their even and odd parts (r = e + o and r' = e - o: B^T and A), two columns for +p and
-p share a sum and a difference (A^T). Each array operation is one pass over memory, and the plan
takes the fewest passes it finds (eq. W12 counts them).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..backend import get_array_module

__all__ = ["WinogradVariant", "TransformPlan", "winograd_variant", "transform_plan", "apply_transform"]


class WinogradVariant(NamedTuple):
    """F(m x m, 3 x 3): output blocks of m x m from input tiles of t x t pixels, t = m + 2.

    BT (t, t) transforms an input tile, G (t, 3) a filter, AT (m, t) the products back to outputs; points
    are the interpolation points the matrices come from (None standing for infinity).
    """
    m: int
    BT: np.ndarray
    G: np.ndarray
    AT: np.ndarray
    points: tuple

    @property
    def tile(self) -> int:
        """t = m + 2, the side of an input tile (and of the transformed tiles U and V)."""
        return self.m + 2


# Lavin & Gray (2016), "Fast algorithms for convolutional neural networks". F(2, 3) (eq. W4): the points
# 0, 1, -1 and infinity, with the sign of the last product flipped in BT and AT (the product is unchanged).
F2x2_3x3 = WinogradVariant(
    m=2,
    BT=np.array([[1, 0, -1, 0],
                 [0, 1, 1, 0],
                 [0, -1, 1, 0],
                 [0, 1, 0, -1]], dtype=np.float64),
    G=np.array([[1, 0, 0],
                [0.5, 0.5, 0.5],
                [0.5, -0.5, 0.5],
                [0, 0, 1]], dtype=np.float64),
    AT=np.array([[1, 1, 1, 0],
                 [0, 1, -1, -1]], dtype=np.float64),
    points=(0, 1, -1, None))

# F(4, 3) (eqs. W10, W11): the points 0, 1, -1, 2, -2 and infinity. Row i of BT holds the coefficients of
# the Lagrange numerator prod_{j != i} (x - p_j) (the last row: of x (x² - 1) (x² - 4)); row i of G
# evaluates g at p_i divided by prod_{j != i} (p_i - p_j) (4, -6, -6, 24, 24); column i of AT evaluates
# the output polynomial at p_i (1, p_i, p_i², p_i³). 1/6, 1/12 and 1/24 are not binary fractions: G
# rounds, as do the larger coefficients of BT and AT (derivations §W, "Precision").
F4x4_3x3 = WinogradVariant(
    m=4,
    BT=np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], dtype=np.float64),
    G=np.array([[1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1]], dtype=np.float64),
    AT=np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], dtype=np.float64),
    points=(0, 1, -1, 2, -2, None))

VARIANTS = {2: F2x2_3x3, 4: F4x4_3x3}
"""The variants by output block size m: F(2x2, 3x3) (``algorithm="winograd"``) and F(4x4, 3x3)
(``algorithm="winograd4"``)."""


def winograd_variant(m: int) -> WinogradVariant:
    """The variant F(m x m, 3 x 3) of :data:`VARIANTS` (read at each call). A ValueError for another m."""
    if m not in VARIANTS:
        raise ValueError(f"Winograd F(m x m, 3 x 3) is implemented for m in {sorted(VARIANTS)}, got m={m!r}")
    return VARIANTS[m]


# ------------------------------------------------------------ a transform as a list of array operations
# A plan is a list of operations (name, *sources, target): "add", "subtract" (a, b), "multiply" (a, constant),
# "negative" (a) or "copy" (a, or the constant 0.0), each one NumPy/CuPy call and one pass over memory. An
# array is named by a tuple: ("part", j), ("out", i), ("tmp", j) (a work array); constants are floats.
# Rows of a matrix are dicts {source: coefficient}, zeros left out.
SPARE = ("spare", 0)    # the work array of a combination with two coefficients other than ±1


def _signed_sum(signed, out, ops) -> float:
    """Operations for out = ±(sum of sign * a) over at least two (sign, a), len(signed) - 1 of them; returns
    the sign (+1 or -1) of what out holds: with no positive term the negated sum is cheaper."""
    flip = 1.0 if any(s > 0 for s, _ in signed) else -1.0
    signed = sorted(((s * flip, a) for s, a in signed), key=lambda sa: -sa[0])   # a positive term first
    ops.append(("add" if signed[1][0] > 0 else "subtract", signed[0][1], signed[1][1], out))
    ops += [("add" if s > 0 else "subtract", out, a, out) for s, a in signed[2:]]
    return flip


def _combination(terms, out):
    """Operations for out = sum of c * a over ``terms`` [(c, a)], no temporaries beyond :data:`SPARE`.

    Terms with the same |c| are summed first and scaled once (-4 d1 - 4 d2: one add, one multiply); the
    first such group is built in ``out``, the others in SPARE and added in; the ±1 terms come last. ``out``
    may be the first term's array when all coefficients are ±1 (an update in place).
    """
    groups, ops = {}, []
    for c, a in terms:
        groups.setdefault(abs(c), []).append((1.0 if c > 0 else -1.0, a))
    unit = groups.pop(1.0, [])
    for n, (magnitude, signed) in enumerate(groups.items()):
        target = out if n == 0 else SPARE
        if len(signed) == 1:
            ops.append(("multiply", signed[0][1], signed[0][0] * magnitude, target))
        else:
            ops.append(("multiply", target, _signed_sum(signed, target, ops) * magnitude, target))
        if n > 0:
            ops.append(("add", out, SPARE, out))
    if groups:
        ops += [("add" if s > 0 else "subtract", out, a, out) for s, a in unit]
    elif not unit:                              # a row of zeros (only in a deliberately changed matrix)
        ops.append(("copy", 0.0, out))
    elif len(unit) == 1:
        ops.append(("copy", unit[0][1], out) if unit[0][0] > 0 else ("negative", unit[0][1], out))
    elif _signed_sum(unit, out, ops) < 0:
        ops.append(("negative", out, out))
    return ops


def _compile(steps):
    """The operations of steps [(target, terms)], in order."""
    return [op for target, terms in steps for op in _combination(terms, target)]


def _direct(rows):
    return [(("out", i), [(c, a) for a, c in row.items()]) for i, row in enumerate(rows)]


def _pair_columns(rows):
    """Columns j, k with row[j] = ±row[k] in every row (the points +p and -p of A^T): the rows read
    p_j + p_k or p_j - p_k instead, each formed once into a work array, where that saves operations.
    Returns (rows, steps that form the work arrays, work arrays used)."""
    steps, tmp = [], 0
    columns = sorted({a for row in rows for a in row})
    for j in columns:
        for k in (k for k in columns if k > j):
            pairs = [(row.get(j, 0), row.get(k, 0)) for row in rows]
            if any(cj not in (ck, -ck) for cj, ck in pairs) or not any(cj for cj, _ in pairs):
                continue
            formed, source = [], {}
            for sign in (1.0, -1.0):                    # the sum, the difference: those that some row reads
                if any(cj and cj == sign * ck for cj, ck in pairs):
                    source[sign] = ("tmp", tmp + len(formed))
                    formed.append((source[sign], [(1.0, j), (sign, k)]))
            new = [{**{a: c for a, c in row.items() if a not in (j, k)},
                    **({source[1.0 if cj == ck else -1.0]: cj} if cj else {})} for row, (cj, ck) in zip(rows, pairs)]
            if len(_compile(formed + _direct(new))) < len(_compile(_direct(rows))):
                rows, steps, tmp = new, steps + formed, tmp + len(formed)
    return rows, steps, tmp


def _pair_rows(rows, tmp):
    """Rows i, k with row_i = e + o and row_k = e - o (the points +p and -p of B^T and A): e is built in
    out i, o in a work array, then out k = e - o and out i = e + o, where that saves operations. A half that
    is one part with coefficient 1 is read as it is. Returns (steps, work arrays used in all)."""
    plan = {i: [step] for i, step in enumerate(_direct(rows))}
    used = tmp
    for i in range(len(rows)):
        for k in range(i + 1, len(rows)):
            a, b = rows[i], rows[k]
            if len(plan[i]) != 1 or len(plan[k]) != 1 or set(a) != set(b) or any(a[s] not in (b[s], -b[s]) for s in a):
                continue
            halves = ([(a[s], s) for s in a if a[s] == b[s]], [(a[s], s) for s in a if a[s] == -b[s]])
            if not all(halves):
                continue
            steps, sources = [], []
            for half, target in zip(halves, (("out", i), ("tmp", tmp))):
                if len(half) == 1 and half[0][0] == 1:  # one part with coefficient 1: read as it is
                    sources.append(half[0][1])
                else:
                    steps.append((target, half))
                    sources.append(target)
            e, o = sources
            steps += [(("out", k), [(1.0, e), (-1.0, o)]), (("out", i), [(1.0, e), (1.0, o)])]   # out k reads e first
            if len(_compile(steps)) < len(_compile(plan[i] + plan[k])):
                plan[i], plan[k] = steps, []
                used = tmp + 1
    return [step for i in range(len(rows)) for step in plan[i]], used


class TransformPlan(NamedTuple):
    """How :func:`apply_transform` computes ``matrix @ parts``: ``ops``, the array operations in order (each
    one pass over memory: their count is the cost eq. W12 counts), and ``buffers``, how many work arrays
    shaped like one output they need."""
    ops: tuple
    buffers: int


@lru_cache(maxsize=64)
def _plan(matrix: tuple) -> TransformPlan:
    rows = [{("part", j): c for j, c in enumerate(row) if c != 0} for row in matrix]
    rows, steps, tmp = _pair_columns(rows)
    row_steps, tmp = _pair_rows(rows, tmp)
    ops = _compile(steps + row_steps)
    spare = any(SPARE in op for op in ops)
    ops = [tuple(("tmp", tmp) if x == SPARE else x for x in op) for op in ops]   # the spare after the others
    return TransformPlan(tuple(ops), tmp + spare)


def transform_plan(matrix) -> TransformPlan:
    """The :class:`TransformPlan` of ``matrix`` (r, n): the fewest operations found, with the factorisations
    of the module docstring. Cached per matrix (the coefficients are read in float64)."""
    return _plan(tuple(tuple(float(c) for c in row) for row in np.asarray(matrix)))


def apply_transform(plan: TransformPlan, parts, outs, scratch) -> None:
    """outs[i] = sum_j matrix[i, j] * parts[j] for every row i of the plan's matrix (r, n), by whole-array operations.

    parts: n arrays of one shape (views of the tiles); outs: r arrays of that shape, not overlapping the
    parts; scratch: an array (b, *shape), b >= ``plan.buffers`` (None if 0), whose contents are free. The
    arithmetic runs in the arrays' dtype.
    """
    xp = get_array_module(*parts, *outs)
    arrays = {"part": parts, "out": outs, "tmp": scratch}

    def get(x):
        return x if isinstance(x, float) else arrays[x[0]][x[1]]

    for name, *args in plan.ops:
        *sources, target = map(get, args)
        if name == "copy":
            target[...] = sources[0]
        else:
            getattr(xp, name)(*sources, out=target)
