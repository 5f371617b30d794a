"""Input policies: crops at native resolution, never resized."""

import json

import numpy as np
import pytest

from realjudge.errors import UsageError
from realjudge.preprocess import InputPolicy, crop_positions


def test_crop_grid_spans_the_image_and_keeps_pixels():
    img = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    pol = InputPolicy(kind="crop", size=64, crops=64)
    views, note = pol.views(img)
    assert len(views) == 64 and "64 crop(s)" in note
    pos = crop_positions(375, 500, 64, 64)
    ys, xs = sorted({y for y, _ in pos}), sorted({x for _, x in pos})
    assert ys[0] == 0 and ys[-1] == 375 - 64 and xs[0] == 0 and xs[-1] == 500 - 64 and len(ys) == len(xs) == 8
    y, x = pos[9]
    assert np.array_equal(views[9], img[y:y + 64, x:x + 64])  # cut, not resampled
    # Up to five crops: centre first, then the corners, as before.
    assert crop_positions(375, 500, 64, 5)[0] == ((375 - 64) // 2, (500 - 64) // 2)
    # A patch-sized image has one position however many crops are asked for.
    assert crop_positions(64, 64, 64, 64) == [(0, 0)]
    with pytest.raises(UsageError, match="crops must be"):
        InputPolicy(kind="crop", size=64, crops=65)


def test_shifted_views_move_pixels_and_round_trip_through_json():
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pol = InputPolicy(size=32, shifts=((1, 0), (-1, 0)), mirror=True)
    views, note = pol.views(img)
    assert len(views) == 6 and "2 shifted copies" in note and "mirrored" in note
    right, left = views[1], views[2]
    assert np.array_equal(right[:, 1:], img[:, :-1]) and np.array_equal(right[:, 0], img[:, 1])  # reflected edge
    assert np.array_equal(left[:, :-1], img[:, 1:])
    assert np.array_equal(views[3], img[:, ::-1]) and np.array_equal(views[4], right[:, ::-1])
    assert InputPolicy.from_json(json.loads(json.dumps(pol.to_json()))) == pol
    assert InputPolicy.from_json({k: v for k, v in pol.to_json().items() if k != "shifts"}).shifts == ()  # old bundles
    for bad in ((0, 0), (16, 0), (1,)):
        with pytest.raises(UsageError, match="test-time shift"):
            InputPolicy(size=32, shifts=(bad,))


def test_validation_scoring_averages_the_same_views_as_detection(tiny_bundle, tiny_flat):
    from dataclasses import replace

    from PIL import Image

    import realjudge
    from realjudge.train.scoring import predict_logits

    det = realjudge.load(str(tiny_bundle))
    det.policy = replace(det.policy, shifts=((2, -1),), mirror=True)
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted((tiny_flat / "fake").iterdir())[:3]])
    expected = [r.logit for r in det.predict(list(imgs))]
    assert predict_logits(det.model, det.policy, imgs) == pytest.approx(expected, abs=1e-5)


def test_same_input_ignores_views_and_the_fields_a_resize_does_not_use():
    base = InputPolicy(kind="resize", size=32)
    assert base.same_input(InputPolicy(kind="resize", size=32, crops=1, pad="constant", mirror=True, shifts=((1, 0),)))
    assert not base.same_input(InputPolicy(kind="resize", size=32, filter="bilinear"))
    assert not base.same_input(InputPolicy(kind="resize", size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    crop = InputPolicy(kind="crop", size=64, crops=5)
    assert not crop.same_input(InputPolicy(kind="crop", size=64, crops=1))
