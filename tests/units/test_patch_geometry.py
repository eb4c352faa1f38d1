"""Square patch geometry: centre, side, margin, padding, tiny and huge boxes, mask alignment."""

from __future__ import annotations

import numpy as np
import pytest

from humanstyle.stages.detect import square_box, square_patch


def ramp_frame(h: int = 200, w: int = 300) -> np.ndarray:
    """A frame whose every pixel is non-zero and distinct by position, so black padding is unmistakable."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx % 250) + 1, (yy % 250) + 1, np.full_like(xx, 200)], axis=-1).astype(np.uint8)


def test_square_is_centred_with_margin_on_each_side():
    # box 40 x 80 centred at (120, 90); margin 0.25 on each side: side = 80 * 1.5 = 120
    assert square_box((100, 50, 140, 130), 0.25) == (60, 30, 180, 150)
    assert square_box((100, 50, 140, 130), 0.0) == (80, 50, 160, 130)


def test_unit_scale_patch_is_exactly_the_frame_crop():
    frame = ramp_frame()
    p = square_patch(frame, (100, 50, 140, 130), margin=0.25, size=120)
    assert p.square == (60, 30, 180, 150) and p.scale == 1.0
    np.testing.assert_array_equal(p.image, frame[30:150, 60:180])
    assert p.mask is None
    assert p.to_frame(0, 0) == (60, 30) and p.to_frame(60, 60) == (120, 90)


def test_corner_box_is_padded_black_on_the_missing_side():
    frame = ramp_frame()
    p = square_patch(frame, (0, 0, 20, 40), margin=0.0, size=40)  # square (-10, 0, 30, 40)
    assert p.square == (-10, 0, 30, 40)
    assert (p.image[:, :10] == 0).all()
    np.testing.assert_array_equal(p.image[:, 10:], frame[0:40, 0:30])


def test_bottom_right_corner_pads_two_sides():
    frame = ramp_frame()
    p = square_patch(frame, (280, 190, 300, 200), margin=0.5, size=40)  # side 40, square (270, 175, 310, 215)
    assert p.square == (270, 175, 310, 215)
    assert (p.image[:, 30:] == 0).all() and (p.image[25:, :] == 0).all()
    np.testing.assert_array_equal(p.image[:25, :30], frame[175:200, 270:300])


def test_fully_padded_sides_of_a_wide_frame_strip():
    frame = ramp_frame(20, 300)
    mask = np.ones((20, 300), bool)
    p = square_patch(frame, (100, 0, 200, 20), margin=0.0, size=100, mask=mask)  # square (100, -40, 200, 60)
    assert (p.image[:40] == 0).all() and (p.image[60:] == 0).all()
    assert p.mask[40:60].all() and not p.mask[:40].any() and not p.mask[60:].any()


def test_shrinking_uses_area_interpolation():
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[::2, ::2] = frame[1::2, 1::2] = 255  # one-pixel checkerboard
    p = square_patch(frame, (0, 0, 400, 400), margin=0.0, size=100)
    assert np.abs(p.image.astype(int) - 127).max() <= 1  # nearest/linear would alias to 0 or 255


@pytest.mark.parametrize("box", [(10, 10, 11, 11), (10.2, 10.2, 11.0, 12.1), (0, 0, 1, 2)])
def test_tiny_boxes_are_enlarged(box):
    frame = ramp_frame()
    p = square_patch(frame, box, margin=0.0, size=256)
    assert p.image.shape == (256, 256, 3)
    x0, y0, x1, y1 = p.square
    assert x1 - x0 == y1 - y0 >= 1
    assert p.scale == 256 / (x1 - x0)


def test_huge_box_bigger_than_the_frame():
    frame = np.full((100, 100, 3), 255, np.uint8)
    mask = np.ones((100, 100), bool)
    p = square_patch(frame, (-1000, -1000, 2000, 2000), margin=0.0, size=256, mask=mask)
    assert p.square == (-1000, -1000, 2000, 2000)
    # the frame covers patch pixels 1000..1100 / 3000 * 256 = 85.3..93.9
    ys, xs = np.nonzero(p.mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (85, 93, 85, 93)
    assert (p.image[p.mask] == 255).all() and (p.image[~p.mask] == 0).all()


def test_float_box_gives_whole_pixel_square():
    p = square_patch(ramp_frame(), (10.3, 20.7, 50.2, 80.9), margin=0.1, size=64)
    x0, y0, x1, y1 = p.square
    assert all(isinstance(v, int) for v in p.square)
    assert x1 - x0 == y1 - y0 == round(60.2 * 1.2)
    assert abs((x0 + x1) / 2 - 30.25) <= 0.5 and abs((y0 + y1) / 2 - 50.8) <= 0.5


@pytest.mark.parametrize(
    "box",
    [
        (10, 10, 10, 20),
        (10, 10, 5, 20),
        (10, 20, 30, 20),
        (np.nan, 0, 10, 10),
        (0, 0, np.inf, 10),
        (400, 10, 420, 30),
        (-50, -50, -10, -10),
        (1, 2, 3),
    ],
)
def test_degenerate_or_outside_boxes_raise(box):
    with pytest.raises(ValueError):
        square_patch(ramp_frame(), box, margin=0.1, size=32)


def test_mask_rectangle_lands_where_the_geometry_says():
    frame = np.zeros((480, 640, 3), np.uint8)
    mask = np.zeros((480, 640), bool)
    mask[100:200, 300:350] = True
    frame[mask] = 255
    box = (300, 100, 350, 200)
    p = square_patch(frame, box, margin=0.1, size=256, mask=mask)
    x0, y0, x1, y1 = p.square
    assert (x1 - x0) == 120 and p.scale == 256 / 120
    expect = np.zeros((256, 256), bool)
    ex0, ex1 = round((300 - x0) * p.scale), round((350 - x0) * p.scale)
    ey0, ey1 = round((100 - y0) * p.scale), round((200 - y0) * p.scale)
    expect[ey0:ey1, ex0:ex1] = True
    ys, xs = np.nonzero(p.mask)
    assert abs(xs.min() - ex0) <= 1 and abs(xs.max() + 1 - ex1) <= 1
    assert abs(ys.min() - ey0) <= 1 and abs(ys.max() + 1 - ey1) <= 1
    iou = (expect & p.mask).sum() / (expect | p.mask).sum()
    assert iou > 0.97
    # image and mask share the geometry: the white rectangle is where the mask is
    assert (p.image[p.mask] > 127).all() and (p.image[~p.mask] < 128).mean() > 0.99


def test_grey_frame_and_bad_mask_shape():
    frame = np.full((50, 60), 7, np.uint8)
    p = square_patch(frame, (10, 10, 30, 30), margin=0.0, size=16)
    assert p.image.shape == (16, 16) and (p.image == 7).all()
    with pytest.raises(ValueError):
        square_patch(frame, (10, 10, 30, 30), mask=np.ones((10, 10), bool))
