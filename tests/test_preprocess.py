"""Input policies: crops at native resolution, never resized."""

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
