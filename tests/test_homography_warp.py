"""warp_perspective and perspective_transform against OpenCV."""

from __future__ import annotations

import cv2
import mlx.core as mx
import numpy as np
import pytest
from helpers import assert_device_safe

from mlxgeom.homography import perspective_transform, perspective_transform_ex, warp_perspective

H_TEST = np.array([[0.9, 0.08, 5.0], [-0.05, 1.05, 3.0], [2e-4, -1e-4, 1.0]])
INTERP = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
BORDER = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def _smooth_image(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    """uint8 (h, w, 3) image with gradients <= ~10 levels/pixel.

    OpenCV rounds source coordinates to 1/32 pixel; on such an image that moves a bilinear sample
    by < 0.2 levels, so a 1-level bound tests the conventions (a half-pixel slip costs ~5 levels).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for _ in range(3):
        fx, fy, ph = rng.uniform(0.05, 0.12, 2).tolist() + [rng.uniform(0, 6)]
        chans.append(127 + 60 * np.sin(fx * xx + ph) + 50 * np.cos(fy * yy + 0.3 * fx * xx))
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_warp_matches_opencv_within_one_level(interpolation, border):
    img = _smooth_image()
    ref = cv2.warpPerspective(img, H_TEST, (110, 80), flags=INTERP[interpolation],
                              borderMode=BORDER[border], borderValue=(9, 9, 9))
    out = warp_perspective(img, mx.array(H_TEST, mx.float32), (110, 80), interpolation=interpolation,
                           border=border, border_value=9)
    assert out.shape == (80, 110, 3) and out.dtype == mx.float32
    diff = np.abs(np.round(np.array(out)) - ref)
    assert diff[2:-2, 2:-2].max() <= 1


def test_warp_of_a_batch_matches_one_by_one_and_broadcasts():
    imgs = np.stack([_smooth_image(seed=s)[..., 0] for s in range(2)])  # (2, h, w) grayscale
    hs = np.stack([H_TEST, np.diag([1.1, 0.95, 1.0])])
    out = warp_perspective(imgs, hs, (100, 70), channels=False)
    assert out.shape == (2, 70, 100)
    for b in range(2):
        ref = cv2.warpPerspective(imgs[b], hs[b], (100, 70))
        assert np.abs(np.round(np.array(out[b])) - ref)[2:-2, 2:-2].max() <= 1
    one_to_many = warp_perspective(imgs[0], hs, (100, 70))  # one image, two matrices
    assert one_to_many.shape == (2, 70, 100)
    np.testing.assert_allclose(np.array(one_to_many[0]), np.array(out[0]), atol=1e-4)


def test_identity_warp_returns_the_image_and_shift_moves_it():
    img = _smooth_image().astype(np.float32)
    np.testing.assert_allclose(np.array(warp_perspective(img, np.eye(3), (120, 90))), img, atol=1e-4)
    shift = np.array([[1.0, 0, 2.0], [0, 1, 1.0], [0, 0, 1]])
    out = np.array(warp_perspective(img, shift, (120, 90)))
    np.testing.assert_allclose(out[1:, 2:], img[:-1, :-2], atol=1e-4)
    assert (out[0] == 0).all() and (out[:, :2] == 0).all()


def test_warp_gradient_with_respect_to_h_is_finite_and_matches_differences():
    img = mx.array(_smooth_image()[..., 0].astype(np.float32) / 255)
    # Off the integer translations of H_TEST, where bilinear sampling has kinks.
    h0 = mx.array(H_TEST + [[0, 0, 0.0137], [0, 0, 0.021], [0, 0, 0]], mx.float32)
    probe = mx.array(np.random.default_rng(1).normal(size=(40, 50)).astype(np.float32))

    def f(h):
        return mx.sum(warp_perspective(img, h, (50, 40)) * probe)

    g = np.array(mx.grad(f)(h0))
    assert np.isfinite(g).all()
    e = np.zeros((3, 3), np.float32)
    e[0, 2] = 2e-3
    num = (f(h0 + mx.array(e)).item() - f(h0 - mx.array(e)).item()) / 4e-3
    assert abs(num - g[0, 2]) <= 0.03 * abs(num) + 1e-2


def test_singular_h_gives_border_values_not_nan():
    img = _smooth_image()
    out = np.array(warp_perspective(img, np.zeros((3, 3)), (20, 10), border_value=4))
    assert np.isfinite(out).all() and (out == 4).all()


@pytest.mark.parametrize("dim", [2, 3])
def test_perspective_transform_matches_opencv(dim):
    rng = np.random.default_rng(dim)
    pts = rng.uniform(-100, 700, (1, 64, dim))
    m = np.eye(dim + 1) + rng.normal(0, 0.05, (dim + 1, dim + 1))
    m[-1, :-1] *= 1e-2
    ref = cv2.perspectiveTransform(pts, m)
    out = perspective_transform(mx.array(pts, mx.float32), mx.array(m, mx.float32))
    np.testing.assert_allclose(np.array(out), ref, rtol=1e-5, atol=2e-3)


def test_points_at_infinity_are_flagged_and_zero():
    h = mx.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])  # w = x
    pts, valid = perspective_transform_ex(mx.array([[0.0, 3.0], [2.0, 4.0]]), h)
    assert valid.tolist() == [False, True]
    np.testing.assert_allclose(np.array(pts), [[0, 0], [1, 2]])
    g = mx.grad(lambda p: mx.sum(perspective_transform(p, h)))(mx.array([[0.0, 3.0]]))
    assert np.isfinite(np.array(g)).all()


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"\(\*, 3, 3\)"):
        perspective_transform(np.zeros((4, 2)), np.eye(4))
    with pytest.raises(ValueError, match=r"\(\*, 3, 3\)"):
        warp_perspective(np.zeros((8, 8)), np.eye(2), (8, 8))
    with pytest.raises(ValueError, match="interpolation"):
        warp_perspective(np.zeros((8, 8)), np.eye(3), (8, 8), interpolation="cubic")
    with pytest.raises(ValueError, match="do not broadcast"):
        warp_perspective(np.zeros((2, 8, 8, 1)), np.stack([np.eye(3)] * 3), (8, 8))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_warp_is_device_safe(interpolation):
    def make(batch):
        img = mx.array(np.stack([_smooth_image(30, 40, seed=s) for s in range(batch)]).astype(np.float32))
        hs = mx.array(np.stack([H_TEST] * batch), mx.float32)
        return img, hs

    assert_device_safe(lambda i, h: warp_perspective(i, h, (36, 28), interpolation=interpolation), make)


def test_perspective_transform_is_device_safe():
    def make(batch):
        rng = np.random.default_rng(batch)
        return mx.array(rng.uniform(0, 100, (batch, 10, 2)), mx.float32), mx.array(np.stack([H_TEST] * batch), mx.float32)

    assert_device_safe(lambda p, h: perspective_transform_ex(p, h), make)


def test_warp_refuses_a_channels_first_image_and_names_the_fixes():
    img = mx.zeros((3, 60, 80))
    with pytest.raises(ValueError, match=r"\(3, 60, 80\).*channels-last.*transpose\(1, 2, 0\).*channels=False"):
        warp_perspective(img, mx.eye(3), (80, 60))
    # The documented ways out: move the axis last, or say what the axes are.
    assert warp_perspective(img.transpose(1, 2, 0), mx.eye(3), (80, 60)).shape == (60, 80, 3)
    assert warp_perspective(img, mx.eye(3), (80, 60), channels=False).shape == (3, 60, 80)
    assert warp_perspective(img, mx.eye(3), (10, 5), channels=True).shape == (5, 10, 80)


@pytest.mark.parametrize("shape, channels", [((0, 5), None), ((5, 0, 3), None), ((4, 6, 0), True), ((2, 0, 4), False)])
def test_warp_of_an_empty_image_is_a_value_error(shape, channels):
    with pytest.raises(ValueError, match=r"images: empty image of shape"):
        warp_perspective(mx.zeros(shape), mx.eye(3), (4, 3), channels=channels)


def test_warp_of_an_empty_batch_is_an_empty_batch():
    assert warp_perspective(mx.zeros((0, 6, 5, 3)), mx.eye(3), (4, 3)).shape == (0, 3, 4, 3)
