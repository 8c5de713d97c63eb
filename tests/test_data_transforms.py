"""Batch transforms, checked against independent computations (slices, np.rot90, a naive bilinear loop)."""
import math

import numpy as np
import pytest

from minigru.backend import to_numpy
from minigru.data import (Compose, Normalize, RandomAffine, RandomCrop, RandomHorizontalFlip, RandomRotation,
                          RandomShear, RandomShift, RandomZoom, ToFloat, affine_matrices, augmentation, warp_affine)


def batch(xp, shape=(4, 3, 6, 7), dtype=np.float64, seed=0):
    host = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return host, xp.asarray(host)


# ------------------------------------------------------------------ ToFloat, Normalize, Compose

def test_to_float(xp):
    host = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 5), dtype=np.uint8)
    out = ToFloat()(xp.asarray(host), None)
    assert out.dtype == np.float32 and type(out) is type(xp.asarray(host))
    expected = np.vectorize(lambda v: v / 255.0)(host)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-6)
    assert ToFloat(np.float64)(xp.asarray(host)).dtype == np.float64
    with pytest.raises(TypeError, match="ToFloat expects uint8"):
        ToFloat()(xp.asarray(host.astype(np.float32)))


def test_normalize_per_channel(xp):
    host, x = batch(xp)
    mean, std = [0.1, -0.2, 0.3], [0.5, 2.0, 1.5]
    out = to_numpy(Normalize(mean, std)(x, None))
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (host[:, c] - mean[c]) / std[c], rtol=1e-12)
    np.testing.assert_allclose(to_numpy(Normalize(0.5, 2.0)(x, None)), (host - 0.5) / 2.0, rtol=1e-12)
    with pytest.raises(ValueError, match="2 mean values for a batch of 3 channels"):
        Normalize([0, 0], [1, 1])(x, None)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(0, 0)


def test_compose_chains_in_order(xp):
    host, x = batch(xp)
    composed = Compose([Normalize(1.0, 2.0), Normalize(0.0, 0.5)])
    np.testing.assert_allclose(to_numpy(composed(x, None)), (host - 1.0) / 2.0 / 0.5, rtol=1e-12)
    assert Compose([ToFloat(), RandomHorizontalFlip()]).accepts_uint8
    assert not Compose([RandomHorizontalFlip(), ToFloat()]).accepts_uint8
    with pytest.raises(TypeError, match="not callable"):
        Compose([1])


# ------------------------------------------------------------------ flip and crop

@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_flip_matches_reversed_columns(xp, p):
    host, x = batch(xp, (9, 2, 3, 5))
    out = to_numpy(RandomHorizontalFlip(p)(x, np.random.default_rng(7)))
    flips = np.random.default_rng(7).random(9) < p  # replay the coins
    for n in range(9):
        np.testing.assert_array_equal(out[n], host[n, :, :, ::-1] if flips[n] else host[n])
    np.testing.assert_array_equal(to_numpy(x), host)  # the input is untouched
    if p == 0.5:
        assert 0 < flips.sum() < 9


@pytest.mark.parametrize("mode", ["constant", "reflect"])
@pytest.mark.parametrize("shape,size,padding", [
    ((6, 3, 8, 8), 8, 2), ((5, 2, 7, 9), (5, 6), 0), ((4, 1, 5, 6), (5, 6), 3), ((1, 3, 4, 4), 4, 0),
    ((3, 2, 2, 3), (3, 2), 1),
])
def test_crop_equals_padded_slice(xp, shape, size, padding, mode):
    host, x = batch(xp, shape)
    crop = RandomCrop(size, padding=padding, padding_mode=mode)
    out = to_numpy(crop(x, np.random.default_rng(3)))
    h, w = (size, size) if isinstance(size, int) else size
    N, C, H, W = shape
    replay = np.random.default_rng(3)
    oy = replay.integers(0, H + 2 * padding - h + 1, size=N)
    ox = replay.integers(0, W + 2 * padding - w + 1, size=N)
    padded = np.pad(host, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode=mode)
    assert out.shape == (N, C, h, w)
    for n in range(N):
        np.testing.assert_array_equal(out[n], padded[n, :, oy[n]:oy[n] + h, ox[n]:ox[n] + w])


def test_crop_reuses_scratch_without_corrupting_earlier_outputs(xp):
    host, x = batch(xp, (4, 3, 6, 6))
    crop = RandomCrop(6, padding=2, fill=-5.0)
    first = crop(x, np.random.default_rng(0))
    kept = to_numpy(first).copy()
    crop(x * 3, np.random.default_rng(1))
    crop(x[:2], np.random.default_rng(2))  # a smaller last batch
    np.testing.assert_array_equal(to_numpy(first), kept)
    again = to_numpy(crop(x, np.random.default_rng(0)))
    np.testing.assert_array_equal(again, kept)
    assert set(np.unique(kept)) - set(np.unique(host)) <= {-5.0}  # only the fill value is new


def test_crop_errors(xp):
    _, x = batch(xp, (2, 3, 4, 4))
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(7, padding=1)(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match="padding must be a non-negative int"):
        RandomCrop(4, padding=-1)
    with pytest.raises(ValueError, match=r"expects a batch of images \(N, C, H, W\)"):
        RandomCrop(4)(x[0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="padding_mode must be one of constant, reflect, got 'edge'"):
        RandomCrop(4, padding=1, padding_mode="edge")
    with pytest.raises(ValueError, match="reflect padding 4 needs images larger than 4 pixels"):
        RandomCrop(4, padding=4, padding_mode="reflect")(x, np.random.default_rng(0))


def test_reflect_crop_by_hand():
    """Reflect padding repeats the pixel next to the edge, not the edge itself (numpy's and torch's "reflect")."""
    image = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)      # rows 1 2 3 / 4 5 6 / 7 8 9
    padded = np.array([[5, 4, 5, 6, 5],                     # written out by hand
                       [2, 1, 2, 3, 2],
                       [5, 4, 5, 6, 5],
                       [8, 7, 8, 9, 8],
                       [5, 4, 5, 6, 5]], dtype=float)
    windows = {tuple(padded[i:i + 3, j:j + 3].ravel()) for i in range(3) for j in range(3)}
    crop = RandomCrop(3, padding=1, padding_mode="reflect")
    seen = {tuple(crop(image, np.random.default_rng(seed))[0, 0].ravel()) for seed in range(200)}
    assert seen == windows


def test_translate_flip_is_a_reflected_shift_of_at_most_two_pixels_then_maybe_a_mirror(xp):
    """Every image of ``--augment translate-flip`` is one of the 25 windows of the image reflect-padded by
    2 pixels, or its mirror; over a batch, shifts and mirrors both occur."""
    host, x = batch(xp, (64, 2, 6, 5))
    out = x
    for step in augmentation("translate-flip", (6, 5)):
        out = step(out, np.random.default_rng(4))
    out = to_numpy(out)
    assert out.shape == host.shape
    shifted = mirrored = 0
    for n in range(len(host)):
        padded = np.pad(host[n], ((0, 0), (2, 2), (2, 2)), mode="reflect")
        views = {(i, j, flip): padded[:, i:i + 6, j:j + 5][..., ::-1] if flip else padded[:, i:i + 6, j:j + 5]
                 for i in range(5) for j in range(5) for flip in (False, True)}
        found = [key for key, view in views.items() if np.array_equal(out[n], view)]
        assert found, f"image {n} is no reflected shift of its input"
        shifted += all(key[:2] != (2, 2) for key in found)
        mirrored += all(key[2] for key in found)
    assert 0 < shifted < len(host) and 0 < mirrored < len(host)


# ------------------------------------------------------------------ alternating flip

def _mirrored(out, images):
    """For each output image: True if it is its input mirrored, False if unchanged (asserting one or the other)."""
    flips = []
    for got, image in zip(out, images):
        same, mirror = np.array_equal(got, image), np.array_equal(got, image[..., ::-1])
        assert same != mirror, "an output image is neither its input nor its mirror"
        flips.append(mirror)
    return np.array(flips)


@pytest.mark.parametrize("batch_size", [7, 16])
def test_alternating_flip_mirrors_each_image_every_other_epoch(xp, batch_size):
    """Through a shuffling DataLoader: in epoch 0 about half the images are mirrored; from then on each image's
    flip is the opposite of the epoch before, whatever batch or position it lands in."""
    from minigru.data import AlternatingFlip, DataLoader
    n = 60
    images = np.random.default_rng(1).standard_normal((n, 2, 3, 5))       # no image is its own mirror
    loader = DataLoader((images, np.arange(n)), batch_size=batch_size, shuffle=True, seed=3,
                        transform=Compose([AlternatingFlip(seed=5)]), dtype=np.float64)
    history = []
    for _ in range(4):
        flips = np.empty(n, dtype=bool)
        for x, y in loader:
            labels = to_numpy(y)
            flips[labels] = _mirrored(to_numpy(x), images[labels])
        history.append(flips)
    assert 0.3 < history[0].mean() < 0.7
    for before, after in zip(history, history[1:]):
        np.testing.assert_array_equal(after, ~before)
    other = AlternatingFlip(seed=6).coins(np.arange(n))
    assert not np.array_equal(other, history[0])                          # the seed draws the first half
    np.testing.assert_array_equal(AlternatingFlip(seed=5).coins(np.arange(n)), history[0])


def test_alternating_flip_coins_do_not_depend_on_the_batch():
    from minigru.data import AlternatingFlip
    ids = np.array([5, 9000, 3, 4097, 4096, 12])                          # spans three blocks of coins
    together = AlternatingFlip(seed=2).coins(ids)
    one_by_one = [AlternatingFlip(seed=2).coins([i])[0] for i in ids]
    np.testing.assert_array_equal(together, one_by_one)


def test_alternating_flip_needs_ids_and_epoch(xp):
    from minigru.data import AlternatingFlip
    _, x = batch(xp)
    with pytest.raises(TypeError, match="needs the samples' indices and the epoch"):
        AlternatingFlip()(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match="3 sample ids for a batch of 4"):
        AlternatingFlip()(x, None, ids=[0, 1, 2], epoch=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        AlternatingFlip(seed=-1)
    plain = Compose([RandomHorizontalFlip(p=1.0)])                        # no ids needed: called as before
    assert not plain.uses_sample_ids and Compose([AlternatingFlip()]).uses_sample_ids
    np.testing.assert_array_equal(to_numpy(plain(x, np.random.default_rng(0))), to_numpy(x)[..., ::-1])


def test_translate_altflip_resumes_exactly(xp):
    """A loader restored from state_dict in its second epoch yields the same (shifted, alternately mirrored)
    batches as one that never stopped."""
    from minigru.data import DataLoader
    images = np.random.default_rng(2).standard_normal((40, 1, 6, 6))

    def make():
        return DataLoader((images, np.arange(40)), batch_size=8, shuffle=True, seed=1, dtype=np.float64,
                          transform=Compose(augmentation("translate-altflip", 6, seed=4)))
    straight = make()
    expected = [to_numpy(x) for _ in range(2) for x, _ in straight]      # epochs 0 and 1, 5 batches each
    first = make()
    seen = [to_numpy(x) for x, _ in first]                                # epoch 0
    it = iter(first)
    seen += [to_numpy(next(it)[0]) for _ in range(2)]                    # two batches of epoch 1, then stop
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    seen += [to_numpy(x) for x, _ in resumed]
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ affine warp

def naive_bilinear(image, M, fill):
    """Independent per-pixel reference of eqs. (A2), (A4), (A5) for one (C, H, W) image."""
    C, H, W = image.shape
    out = np.empty_like(image)

    def read(c, yy, xx):
        return image[c, yy, xx] if 0 <= yy < H and 0 <= xx < W else fill

    for yo in range(H):
        for xo in range(W):
            xs = M[0, 0] * xo + M[0, 1] * yo + M[0, 2]
            ys = M[1, 0] * xo + M[1, 1] * yo + M[1, 2]
            x0, y0 = math.floor(xs), math.floor(ys)
            a, b = xs - x0, ys - y0
            for c in range(C):
                out[c, yo, xo] = ((1 - a) * (1 - b) * read(c, y0, x0) + a * (1 - b) * read(c, y0, x0 + 1)
                                  + (1 - a) * b * read(c, y0 + 1, x0) + a * b * read(c, y0 + 1, x0 + 1))
    return out


def test_identity_warp_returns_input(xp):
    host, x = batch(xp, (3, 2, 5, 8))
    M = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (3, 1, 1))
    np.testing.assert_array_equal(to_numpy(warp_affine(x, M)), host)
    np.testing.assert_array_equal(to_numpy(RandomAffine()(x, np.random.default_rng(0))), host)


@pytest.mark.parametrize("size", [4, 5, 8])
def test_rotation_by_90_degrees_is_rot90(xp, size):
    host, x = batch(xp, (2, 3, size, size))
    M = affine_matrices(size, size, angle=np.array([90.0, -90.0]))
    out = to_numpy(warp_affine(x, M))
    # Positive angles turn the content counter-clockwise on screen, as np.rot90 does.
    np.testing.assert_allclose(out[0], np.rot90(host[0], 1, axes=(1, 2)), atol=1e-12)
    np.testing.assert_allclose(out[1], np.rot90(host[1], -1, axes=(1, 2)), atol=1e-12)


def test_half_pixel_shift_averages_neighbours(xp):
    host, x = batch(xp, (2, 2, 3, 5))
    M = np.tile(np.array([[1.0, 0, 0.5], [0, 1, 0]]), (2, 1, 1))  # sample at x' + 0.5
    out = to_numpy(warp_affine(x, M, fill=0.0))
    np.testing.assert_allclose(out[..., :-1], (host[..., :-1] + host[..., 1:]) / 2, rtol=1e-12)
    np.testing.assert_allclose(out[..., -1], host[..., -1] / 2, rtol=1e-12)  # half of it is the zero fill
    M = np.tile(np.array([[1.0, 0, 0.5], [0, 1, 0.5]]), (2, 1, 1))
    out = to_numpy(warp_affine(x, M))
    quad = (host[..., :-1, :-1] + host[..., :-1, 1:] + host[..., 1:, :-1] + host[..., 1:, 1:]) / 4
    np.testing.assert_allclose(out[..., :-1, :-1], quad, rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 2, 5, 7), (1, 3, 6, 6), (3, 1, 4, 9)])
def test_random_warps_match_naive_loop(xp, shape):
    host, x = batch(xp, shape)
    N, _, H, W = shape
    rng = np.random.default_rng(11)
    M = affine_matrices(H, W, angle=rng.uniform(-40, 40, N), scale=rng.uniform(0.7, 1.4, N),
                        shear_x=rng.uniform(-20, 20, N), shear_y=rng.uniform(-10, 10, N),
                        translate_x=rng.uniform(-2, 2, N), translate_y=rng.uniform(-2, 2, N))
    out = to_numpy(warp_affine(x, M, fill=0.25))
    for n in range(N):
        np.testing.assert_allclose(out[n], naive_bilinear(host[n], M[n], 0.25), rtol=1e-10, atol=1e-12)


def test_affine_matrices_invert_the_forward_map():
    rng = np.random.default_rng(5)
    N, H, W = 6, 7, 10
    angle, s = rng.uniform(-180, 180, N), rng.uniform(0.5, 2, N)
    shx, shy = rng.uniform(-30, 30, N), rng.uniform(-20, 20, N)
    tx, ty = rng.uniform(-3, 3, N), rng.uniform(-3, 3, N)
    M = affine_matrices(H, W, angle, s, shx, shy, tx, ty)
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    for n in range(N):
        th = math.radians(angle[n])
        R = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
        S = np.array([[1, math.tan(math.radians(shx[n]))], [math.tan(math.radians(shy[n])), 1]])
        A = s[n] * R @ S                                        # eq. (A1), written out again
        for p in rng.uniform(-5, 12, size=(4, 2)):
            p_out = A @ (p - c) + c + np.array([tx[n], ty[n]])
            np.testing.assert_allclose(M[n] @ np.append(p_out, 1.0), p, atol=1e-10)


def test_rotation_direction_on_screen(xp):
    image = np.zeros((1, 1, 5, 5))
    image[0, 0, 2, 4] = 1.0  # right of the centre
    out = to_numpy(warp_affine(xp.asarray(image), affine_matrices(5, 5, angle=np.array([90.0]))))
    assert out[0, 0, 0, 2] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)  # now above the centre


def test_shift_moves_content_and_fills(xp):
    host, x = batch(xp, (2, 1, 4, 6))
    out = to_numpy(warp_affine(x, affine_matrices(4, 6, translate_x=np.array([2.0, 2.0])), fill=9.0))
    np.testing.assert_allclose(out[..., 2:], host[..., :-2], rtol=1e-12)
    assert np.all(out[..., :2] == 9.0)


def test_zoom_enlarges_content(xp):
    image = np.zeros((1, 1, 16, 16))
    image[0, 0, 6:10, 6:10] = 1.0
    out = to_numpy(warp_affine(xp.asarray(image), affine_matrices(16, 16, scale=np.array([2.0]))))
    assert out.sum() == pytest.approx(4 * image.sum(), rel=0.05)


def test_random_affine_reproducible_and_per_sample(xp):
    _, x = batch(xp, (5, 3, 8, 8), dtype=np.float32)
    t = RandomAffine(degrees=30, translate=(0.1, 0.2), scale=(0.8, 1.2), shear=(-10, 10, -5, 5), fill=0.5)
    a = t(x, np.random.default_rng(1))
    b = t(x, np.random.default_rng(1))
    c = t(x, np.random.default_rng(2))
    assert a.dtype == np.float32 and a.shape == x.shape and type(a) is type(x)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert not np.allclose(to_numpy(a), to_numpy(c))
    # The warp applied is the one sample_matrices draws from the same stream.
    M = t.sample_matrices(5, 8, 8, np.random.default_rng(1))
    np.testing.assert_allclose(to_numpy(a), to_numpy(warp_affine(x, M, fill=0.5)), rtol=1e-6)


@pytest.mark.parametrize("transform,expected", [
    (RandomRotation(20), {"angle": (-20, 20)}),
    (RandomShift(0.25, 0.5), {"translate_x": (-2, 2), "translate_y": (-2, 2)}),
    (RandomShear(15), {"shear_x": (-15, 15)}),
    (RandomZoom(0.2), {"scale": (0.8, 1.2)}),
])
def test_specialisations_draw_only_their_parameter(xp, transform, expected):
    _, x = batch(xp, (6, 1, 4, 8))
    out = to_numpy(transform(x, np.random.default_rng(4)))
    replay = np.random.default_rng(4)
    draws = {}
    for name, (lo, hi) in expected.items():
        draws[name] = replay.uniform(lo, hi, 6)
    M = affine_matrices(4, 8, **draws)
    np.testing.assert_allclose(out, to_numpy(warp_affine(x, M)), rtol=1e-12, atol=1e-12)


def test_affine_errors(xp):
    host, x = batch(xp, (2, 3, 4, 4))
    with pytest.raises(TypeError, match="put ToFloat"):
        RandomRotation(10)(xp.asarray(host.astype(np.uint8)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="strictly between -90 and 90"):
        RandomShear(90)
    with pytest.raises(ValueError, match="scale factors must be positive"):
        RandomZoom(1.5)
    with pytest.raises(ValueError, match="flatten"):
        RandomAffine(shear=(-60, 60, -60, 60))
    with pytest.raises(ValueError, match=r"matrices must have shape \(2, 2, 3\)"):
        warp_affine(x, np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="singular"):
        affine_matrices(4, 4, scale=np.array([0.0]))
