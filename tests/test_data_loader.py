"""DataLoader: batching, scaling, reproducibility per (seed, epoch, batch), exact resume; dataset splits."""
import numpy as np
import pytest

from minigru.backend import to_numpy
from minigru.data import (Compose, DataLoader, RandomCrop, RandomHorizontalFlip, Subset, ToFloat, make_shapes,
                          random_split, train_val_split)


def dataset(n=10, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 5, size=n).astype(np.int32)
    return images, labels


def collect(loader):
    return [(to_numpy(x).copy(), to_numpy(y).copy()) for x, y in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


class ListDataset:
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def test_batches_in_order_scaled_to_unit_range(backend_name, xp):
    images, labels = dataset(10)
    loader = DataLoader((images, labels), batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    for b, (x, y) in enumerate(batches):
        assert type(x) is type(xp.zeros(1)) and x.dtype == np.float32 and y.dtype == np.int64
        sl = slice(4 * b, 4 * b + 4)
        np.testing.assert_allclose(to_numpy(x), images[sl] / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(to_numpy(y), labels[sl])


def test_drop_last_and_len():
    images, labels = dataset(10)
    loader = DataLoader((images, labels), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]
    assert len(DataLoader((images, labels), batch_size=10)) == 1
    with pytest.raises(ValueError, match="make no batch"):
        DataLoader((images, labels), batch_size=11, drop_last=True)


def test_shuffle_is_a_permutation_reproducible_per_epoch():
    images, labels = dataset(23)
    a = DataLoader((images, labels), batch_size=5, shuffle=True, seed=3)
    b = DataLoader((images, labels), batch_size=5, shuffle=True, seed=3)
    epoch0, epoch1 = collect(a), collect(a)
    assert a.epoch == 2
    assert_same_batches(epoch0, collect(b))
    order0 = np.concatenate([y for _, y in epoch0])
    assert sorted(order0.tolist()) == sorted(labels.tolist())
    # every sample exactly once: match the scaled images back to their indices
    seen = np.concatenate([x for x, _ in epoch0])
    idx = [int(np.flatnonzero(np.all(np.isclose(images / 255.0, s, atol=1e-6), axis=(1, 2, 3)))[0]) for s in seen]
    assert sorted(idx) == list(range(23)) and idx != list(range(23))
    assert not all(np.array_equal(x0, x1) for (x0, _), (x1, _) in zip(epoch0, epoch1))
    b.set_epoch(1)
    assert_same_batches(epoch1, collect(b))
    c = DataLoader((images, labels), batch_size=5, shuffle=True, seed=4)
    assert not np.array_equal(np.concatenate([x for x, _ in collect(c)]), np.concatenate([x for x, _ in epoch0]))


def test_order_method_matches_yielded_batches():
    images, labels = dataset(12)
    loader = DataLoader((images, labels), batch_size=5, shuffle=True, seed=9)
    order = loader.order()
    x = np.concatenate([x for x, _ in collect(loader)])
    np.testing.assert_allclose(x, images[order] / 255.0, rtol=1e-6)


def test_augmentation_reproducible_and_seeded_per_batch():
    images, labels = dataset(16)
    pipeline = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip()])
    run1 = collect(DataLoader((images, labels), batch_size=4, shuffle=True, seed=1, transform=pipeline))
    run2 = collect(DataLoader((images, labels), batch_size=4, shuffle=True, seed=1, transform=pipeline))
    assert_same_batches(run1, run2)
    plain = collect(DataLoader((images, labels), batch_size=4, shuffle=True, seed=1))
    assert any(not np.array_equal(a[0], p[0]) for a, p in zip(run1, plain))
    np.testing.assert_array_equal(np.concatenate([y for _, y in run1]), np.concatenate([y for _, y in plain]))


def test_resume_mid_epoch_gives_exactly_the_remaining_batches():
    images, labels = dataset(30)
    kwargs = dict(batch_size=4, shuffle=True, seed=5, transform=Compose([RandomCrop(4, padding=2),
                                                                         RandomHorizontalFlip()]))
    reference = DataLoader((images, labels), **kwargs)
    ref_epochs = [collect(reference) for _ in range(3)]

    first = DataLoader((images, labels), **kwargs)
    collect(first)                          # epoch 0
    it = iter(first)
    for _ in range(3):                      # 3 batches of epoch 1, then "crash"
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 3

    resumed = DataLoader((images, labels), **kwargs)
    resumed.load_state_dict(state)
    assert_same_batches(collect(resumed), ref_epochs[1][3:])
    assert resumed.epoch == 2
    assert_same_batches(collect(resumed), ref_epochs[2])


def test_resume_with_different_settings_is_refused():
    images, labels = dataset(30)
    state = DataLoader((images, labels), batch_size=4, seed=1).state_dict()
    with pytest.raises(ValueError, match="batch_size=4"):
        DataLoader((images, labels), batch_size=5, seed=1).load_state_dict(state)
    with pytest.raises(KeyError, match="state lacks"):
        DataLoader((images, labels), batch_size=4).load_state_dict({"seed": 1})


def test_peeking_does_not_skip_batches():
    images, labels = dataset(12)
    loader = DataLoader((images, labels), batch_size=4, shuffle=True, seed=0)
    first = next(iter(loader))
    batches = collect(loader)
    np.testing.assert_array_equal(to_numpy(first[0]), batches[0][0])
    assert len(batches) == 3 and loader.epoch == 1


def test_seed_none_is_recorded_for_resume():
    images, labels = dataset(12)
    a = DataLoader((images, labels), batch_size=4, shuffle=True)
    assert isinstance(a.seed, int)
    b = DataLoader((images, labels), batch_size=4, shuffle=True)
    b.load_state_dict(a.state_dict())
    assert_same_batches(collect(a), collect(b))


def test_uint8_pipeline_receives_raw_bytes():
    images, labels = dataset(8)
    seen = []

    class Spy:
        accepts_uint8 = False

        def __call__(self, x, rng):
            seen.append(x.dtype)
            return x

    list(DataLoader((images, labels), batch_size=8, transform=Compose([ToFloat(np.float64), Spy()])))
    assert seen == [np.float64]  # ToFloat got uint8 and produced the floats
    seen.clear()
    x, _ = next(iter(DataLoader((images, labels), batch_size=8, transform=Spy())))
    assert seen == [np.float32]  # the loader scaled before the transform
    np.testing.assert_allclose(to_numpy(x), images / 255.0, rtol=1e-6)


def test_transform_must_return_floats():
    images, labels = dataset(4)
    loader = DataLoader((images, labels), batch_size=4, transform=lambda x, rng: (x * 255).astype(np.uint8))
    with pytest.raises(TypeError, match="must return a floating batch"):
        next(iter(loader))


def test_float_images_and_targets_are_not_rescaled():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((6, 2, 1, 3, 3)).astype(np.float32)   # e.g. (N, T, C, H, W) sequences
    targets = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    x, y = next(iter(DataLoader((frames, targets), batch_size=6, dtype=np.float64)))
    assert x.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(to_numpy(x), frames.astype(np.float64))
    np.testing.assert_array_equal(to_numpy(y), targets.astype(np.float64))


def test_dataset_objects_and_subsets():
    images, labels = dataset(9)
    batches = collect(DataLoader(ListDataset(images, labels), batch_size=4))
    np.testing.assert_allclose(np.concatenate([x for x, _ in batches]), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    sub = Subset(ListDataset(images, labels), [8, 0, 3])
    x, y = next(iter(DataLoader(sub, batch_size=3)))
    np.testing.assert_array_equal(to_numpy(y), labels[[8, 0, 3]])


def test_mixed_sizes_in_a_batch_explained():
    items = [(np.zeros((3, 4, 4), np.uint8), 0), (np.zeros((3, 5, 4), np.uint8), 1)]
    with pytest.raises(ValueError, match="different shapes.*target_size"):
        next(iter(DataLoader(items, batch_size=2)))


def test_bad_arguments():
    images, labels = dataset(4)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        DataLoader((images, labels[:3]))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        DataLoader((images, labels), batch_size=0)
    with pytest.raises(TypeError, match="dtype must be floating"):
        DataLoader((images, labels), dtype=np.int32)
    with pytest.raises(TypeError, match="must be an \\(images, labels\\) pair"):
        DataLoader(42)
    with pytest.raises(ValueError, match="unknown backend"):
        DataLoader((images, labels), backend="torch")
    with pytest.raises(TypeError, match="pass one split, e.g. data.train"):
        DataLoader(make_shapes(4))
    with pytest.raises(TypeError, match="got 3 arrays"):
        DataLoader((images, labels, labels))


def test_labels_may_be_a_list():
    images, labels = dataset(6)
    _, y = next(iter(DataLoader([images, labels.tolist()], batch_size=6)))
    np.testing.assert_array_equal(to_numpy(y), labels)
    (xt, yt), (xv, yv) = train_val_split((images, labels.tolist()), val_fraction=0.5)
    assert len(xt) == len(yt) == 3 and len(xv) == len(yv) == 3


# ------------------------------------------------------------------ splits

def test_random_split_pairs_cover_everything_once():
    images, labels = dataset(20)
    parts = random_split((images, labels), [12, 5, 3], seed=7)
    assert [len(p[0]) for p in parts] == [12, 5, 3]
    flat = np.concatenate([p[0].reshape(len(p[0]), -1) for p in parts])
    assert sorted(map(bytes, flat)) == sorted(map(bytes, images.reshape(20, -1)))
    again = random_split((images, labels), [12, 5, 3], seed=7)
    for p, q in zip(parts, again):
        np.testing.assert_array_equal(p[0], q[0])
        np.testing.assert_array_equal(p[1], q[1])
    other = random_split((images, labels), [12, 5, 3], seed=8)
    assert not np.array_equal(parts[0][0], other[0][0])


def test_random_split_fractions_and_objects():
    images, labels = dataset(10)
    parts = random_split(ListDataset(images, labels), [0.5, 0.3, 0.2], seed=0)
    assert [len(p) for p in parts] == [5, 3, 2] and all(isinstance(p, Subset) for p in parts)
    assert sorted(np.concatenate([p.indices for p in parts]).tolist()) == list(range(10))
    assert [len(p) for p in random_split(ListDataset(images, labels), [0.34, 0.33, 0.33])] == [4, 3, 3]
    with pytest.raises(ValueError, match="sum to 10"):
        random_split((images, labels), [5, 4])


def test_train_val_split():
    images, labels = dataset(50)
    (xt, yt), (xv, yv) = train_val_split((images, labels), val_fraction=0.2, seed=1)
    assert len(xt) == 40 and len(xv) == 10 and len(yt) == 40 and len(yv) == 10
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_val_split((images, labels), val_fraction=1.0)
