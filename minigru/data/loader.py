"""DataLoader: reproducible mini-batches on the current backend, with resumable state; dataset splits.

How a batch is made (``loader = DataLoader((images, labels), batch_size=64, shuffle=True, seed=0)``):

1. The order of epoch ``e`` is ``rng.permutation(N)`` with ``rng`` seeded by
   ``(seed, e)`` (or ``0..N-1`` without shuffling).
2. Batch ``b`` takes the next ``batch_size`` indices; ``images[idx]`` is
   gathered on the host and moved to the backend (as uint8: 4x less traffic).
3. Scaling: uint8 images become floats in ``[0, 1]`` (``x / 255``, in
   ``dtype``) *before* the transform, unless the pipeline starts with
   :class:`~minigru.data.ToFloat` (``transform.accepts_uint8``), which then
   receives the raw uint8 batch. Floating images are only cast to ``dtype``.
4. ``transform(x, rng_b)`` runs with a Generator seeded by ``(seed, e, b)``,
   so every batch's augmentation is fixed by (seed, epoch, batch index) alone.
   A transform with ``uses_sample_ids`` (:class:`~minigru.data.AlternatingFlip`)
   is called as ``transform(x, rng_b, ids=idx, epoch=e)``.
5. Labels come out as int64 (floating targets, e.g. next frames, as ``dtype``).

An epoch advances when an iteration runs to its end (or with
:meth:`DataLoader.set_epoch`). :meth:`DataLoader.state_dict` records the seed,
epoch and the number of batches already yielded in it; a new loader given that
state with :meth:`DataLoader.load_state_dict` continues with exactly the batches
(order and augmentation) the old one would have produced next.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend as B
from .base import ClassificationData

__all__ = ["DataLoader", "Subset", "random_split", "train_val_split"]


def _is_pair(dataset) -> bool:
    return isinstance(dataset, (tuple, list)) and len(dataset) == 2 and all(B.is_array(a) for a in dataset)


def _as_dataset(dataset, who: str):
    """An (images, labels) pair with array labels, or the dataset object itself; clear errors otherwise."""
    if isinstance(dataset, ClassificationData):
        raise TypeError(f"{who}: pass one split, e.g. data.train or data.test, not the whole ClassificationData")
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and B.is_array(dataset[0]):
        images, labels = dataset
        dataset = (images, labels if B.is_array(labels) else B.to_numpy(labels))
        _check_pair(dataset, who)
        return dataset
    if isinstance(dataset, (tuple, list)) and dataset and all(B.is_array(a) for a in dataset):
        raise TypeError(f"{who}: got {len(dataset)} arrays; pass an (images, labels) pair")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{who}: dataset must be an (images, labels) pair of arrays or an object with "
                        f"__len__ and __getitem__, got {type(dataset).__name__}")
    return dataset


def _check_pair(dataset, who: str = "DataLoader") -> None:
    images, labels = dataset
    if len(images) != len(labels):
        raise ValueError(f"{who}: {len(images)} images but {len(labels)} labels")
    for name, a in (("images", images), ("labels", labels)):
        if np.dtype(a.dtype).kind not in "biuf":
            raise TypeError(f"{who}: {name} must be a numeric array, got dtype {a.dtype}")


class Subset:
    """The items ``dataset[i]`` for ``i`` in ``indices`` (any object with __len__/__getitem__)."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]


class DataLoader:
    """Iterate over ``(x, y)`` mini-batches of a dataset, reproducibly.

    Parameters
    ----------
    dataset : an ``(images, labels)`` pair of arrays with the same first
        dimension N (images e.g. uint8 (N, C, H, W), labels int (N,)), or an
        object with ``__len__`` and ``__getitem__(i) -> (image, label)``
        (:class:`~minigru.data.ImageFolder`, :class:`Subset`).
    batch_size : samples per batch; the last batch is smaller unless ``drop_last``.
    shuffle : a new random order every epoch (reproducible from ``seed``).
    transform : ``t(x, rng) -> x`` applied to each batch (see module docstring
        for uint8 scaling).
    seed : int seed of the order and the augmentation; None draws one from
        fresh entropy (kept in :attr:`seed`, so runs can still be resumed).
    dtype : floating dtype of the yielded images (default float32).
    backend : "numpy" or "cupy"; None means the current backend at the time of iterating.

    Yields ``x`` (``dtype``, shape (B, ...)) and ``y`` (int64 (B,)) on the backend.
    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(self, dataset, batch_size: int = 64, shuffle: bool = False, drop_last: bool = False,
                 transform=None, seed=None, dtype=np.float32, backend=None):
        dataset = _as_dataset(dataset, "DataLoader")
        if not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable t(batch, rng), got {transform!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"DataLoader: dtype must be floating point, got {self.dtype}")
        if backend is not None and backend not in B.BACKENDS:
            raise ValueError(f"DataLoader: unknown backend {backend!r}; choose one of {B.BACKENDS}")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"DataLoader: seed must be a non-negative int or None, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.seed = int(seed)
        self.backend = backend
        self.epoch = 0
        self._batches_done = 0   # batches yielded so far in the current epoch
        self._resume_at = 0      # where the next iteration starts (set by load_state_dict)
        if len(self) == 0:
            raise ValueError(f"DataLoader: {self.num_samples} samples make no batch of {batch_size}"
                             + (" with drop_last=True" if drop_last else ""))

    def __len__(self) -> int:
        n = len(self.dataset[0]) if _is_pair(self.dataset) else len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.dataset[0]) if _is_pair(self.dataset) else len(self.dataset)

    # ------------------------------------------------------------------ reproducibility

    def _rng(self, *key) -> np.random.Generator:
        # spawn_key gives independent streams for the order (epoch, 0) and for batch b's augmentation (epoch, 1, b).
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=key)))

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The sample order (int64 (N,)) of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(self.num_samples)
        return self._rng(epoch, 0).permutation(self.num_samples)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch`` (its order and augmentation)."""
        if not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be a non-negative int, got {epoch!r}")
        self.epoch, self._batches_done, self._resume_at = int(epoch), 0, 0

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this loader is: seed, epoch, batches done."""
        return {"seed": self.seed, "epoch": self.epoch, "batches_done": self._batches_done,
                "batch_size": self.batch_size, "num_samples": self.num_samples, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`: the next iteration yields the remaining batches of that epoch."""
        missing = {"seed", "epoch", "batches_done"} - set(state)
        if missing:
            raise KeyError(f"DataLoader.load_state_dict: state lacks {sorted(missing)}")
        for key in ("batch_size", "num_samples", "shuffle"):
            if key in state and state[key] != self.state_dict()[key]:
                raise ValueError(f"DataLoader.load_state_dict: the state was saved with {key}={state[key]!r} but "
                                 f"this loader has {key}={self.state_dict()[key]!r}; resuming would not "
                                 "reproduce the same batches")
        if not 0 <= int(state["batches_done"]) <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: batches_done={state['batches_done']} is outside "
                             f"0..{len(self)}")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._batches_done = self._resume_at = int(state["batches_done"])

    # ------------------------------------------------------------------ batches

    def _gather(self, idx: np.ndarray):
        if _is_pair(self.dataset):
            images, labels = self.dataset
            if B.backend_of(images) == "cupy":
                return images[B.get_array_module(images).asarray(idx)], labels[B.get_array_module(labels).asarray(idx)]
            return images[idx], labels[idx]
        items = [self.dataset[int(i)] for i in idx]
        try:
            images = np.stack([B.to_numpy(image) for image, _ in items])
        except ValueError as err:
            shapes = sorted({tuple(np.shape(image)) for image, _ in items})
            raise ValueError(f"DataLoader: the samples of a batch have different shapes {shapes[:4]}; give the "
                             "dataset a fixed size (e.g. ImageFolder(..., target_size=(32, 32)))") from err
        # B.to_numpy, not np.asarray: a dataset may return labels as device arrays, which CuPy won't convert implicitly
        return images, B.to_numpy([label for _, label in items])

    def _make_batch(self, idx: np.ndarray, rng: np.random.Generator):
        images, labels = self._gather(idx)
        name = self.backend or B.get_backend()
        x = B.to_backend(images, name)
        transform = self.transform
        if x.dtype == np.uint8 and not (transform is not None and getattr(transform, "accepts_uint8", False)):
            x = x.astype(self.dtype)
            x *= self.dtype.type(1.0 / 255.0)
        if transform is not None:
            if getattr(transform, "uses_sample_ids", False):      # e.g. AlternatingFlip: per sample, per epoch
                x = transform(x, rng, ids=idx, epoch=self.epoch)
            else:
                x = transform(x, rng)
            if not B.is_array(x) or np.dtype(x.dtype).kind != "f":
                got = x.dtype if B.is_array(x) else type(x).__name__
                raise TypeError(f"DataLoader: the transform returned {got}; it must return a floating batch")
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        label_dtype = np.int64 if np.dtype(labels.dtype).kind in "biu" else self.dtype
        return x, B.to_backend(labels, name, dtype=label_dtype)

    def __iter__(self):
        order = self.order()
        start, self._resume_at = self._resume_at, 0
        self._batches_done = start
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = self._make_batch(idx, self._rng(self.epoch, 1, b))
            self._batches_done = b + 1
            yield batch
        self.epoch += 1
        self._batches_done = 0

    def __repr__(self):
        return (f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, transform={self.transform!r}, seed={self.seed}, "
                f"dtype={self.dtype.name}, backend={self.backend!r}, epoch={self.epoch})")


# ---------------------------------------------------------------------- splits

def _split_sizes(n: int, lengths) -> list[int]:
    lengths = list(lengths)
    if all(isinstance(v, numbers.Integral) for v in lengths):
        if sum(lengths) != n or min(lengths) < 0:
            raise ValueError(f"random_split: lengths {lengths} must be non-negative and sum to {n}")
        return [int(v) for v in lengths]
    if not math.isclose(sum(lengths), 1.0, abs_tol=1e-9) or min(lengths) < 0:
        raise ValueError(f"random_split: fractions {lengths} must be non-negative and sum to 1")
    sizes = [int(math.floor(f * n)) for f in lengths]
    for i in range(n - sum(sizes)):  # hand out the remainder one by one, as torch does
        sizes[i % len(sizes)] += 1
    return sizes


def random_split(dataset, lengths, seed=0) -> list:
    """Split a dataset at random into parts of the given sizes (ints summing to N, or fractions summing to 1).

    An ``(images, labels)`` pair gives pairs of arrays; any other dataset gives
    :class:`Subset` objects. The split depends only on ``seed`` (int or Generator).
    """
    dataset = _as_dataset(dataset, "random_split")
    n = len(dataset[0]) if _is_pair(dataset) else len(dataset)
    sizes = _split_sizes(n, lengths)
    permutation = B.make_rng(seed).permutation(n)
    parts, start = [], 0
    for size in sizes:
        idx = permutation[start:start + size]
        start += size
        if _is_pair(dataset):
            images, labels = dataset
            parts.append((images[B.get_array_module(images).asarray(idx)],
                          labels[B.get_array_module(labels).asarray(idx)]))
        else:
            parts.append(Subset(dataset, idx))
    return parts


def train_val_split(dataset, val_fraction: float = 0.1, seed=0):
    """``(train, val)``: hold out ``round(val_fraction * N)`` random samples for validation (at least one)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be between 0 and 1, got {val_fraction}")
    dataset = _as_dataset(dataset, "train_val_split")
    n = len(dataset[0]) if _is_pair(dataset) else len(dataset)
    n_val = max(1, round(val_fraction * n))
    if n_val >= n:
        raise ValueError(f"train_val_split: {n} samples are too few to hold out {val_fraction:.0%}")
    train, val = random_split(dataset, [n - n_val, n_val], seed)
    return train, val
