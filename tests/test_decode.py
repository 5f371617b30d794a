import io

import numpy as np
import pytest
from PIL import Image

from conftest import make_images, png_header_only
from realjudge.errors import DecodeError
from realjudge.data.decode import decode, decode_bytes, estimate_jpeg_quality


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


RGB = make_images(1, 3, 40)[0][0]


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "RGBA", "LA", "CMYK", "I", "I;16", "F", "YCbCr"])
def test_every_pillow_mode_becomes_rgb_uint8(mode):
    im = Image.fromarray(RGB).convert(mode) if mode not in ("I;16",) else Image.fromarray(
        (RGB[..., 0].astype(np.uint16) * 257))
    d = decode(im, "x")
    assert d.pixels.dtype == np.uint8 and d.pixels.shape == (40, 40, 3)


def test_sixteen_bit_png_is_scaled_not_clipped():
    grey = np.full((8, 8), 65535, np.uint16)
    d = decode_bytes(_encode(Image.fromarray(grey), "PNG"), "g16.png")
    assert d.pixels.min() == 255


def test_palette_transparency_composited_over_white():
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0] * 256)
    d = decode_bytes(_encode(im, "PNG", transparency=0), "p.png")
    assert (d.pixels == 255).all()


def test_exif_orientation_is_applied():
    im = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    d = decode_bytes(_encode(im, "JPEG", exif=exif), "o.jpg")
    assert d.pixels.shape[:2] == (20, 10)


def test_animated_gif_scores_first_frame():
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    d = decode_bytes(data, "a.gif")
    assert d.facts["frames"] == 2 and d.pixels.mean() < 50


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"hello, not an image", "not an image"),
    (png_header_only(60000, 60000), "too large"),
])
def test_bad_bytes_give_one_line_errors(data, reason):
    with pytest.raises(DecodeError) as e:
        decode_bytes(data, "bad.jpg")
    msg = str(e.value)
    assert msg.startswith("bad.jpg: ") and reason in msg and "\n" not in msg


def test_truncated_jpeg():
    data = _encode(Image.fromarray(make_images(1, 1, 96)[0][0]), "JPEG", quality=90)
    with pytest.raises(DecodeError, match="truncated|cannot decode"):
        decode_bytes(data[: len(data) // 2], "t.jpg")


def test_pixel_limit_is_a_parameter():
    data = _encode(Image.fromarray(RGB), "PNG")
    with pytest.raises(DecodeError, match="too large"):
        decode_bytes(data, "big.png", max_pixels=100)


def test_mislabelled_png_named_jpg_decodes_and_reports_its_format(tmp_path):
    p = tmp_path / "really_png.jpg"
    p.write_bytes(_encode(Image.fromarray(RGB), "PNG"))
    d = decode(p)
    assert d.facts["format"] == "PNG"


@pytest.mark.parametrize("q", [30, 60, 75, 90])
def test_jpeg_quality_estimate(q):
    im = Image.open(io.BytesIO(_encode(Image.fromarray(RGB), "JPEG", quality=q)))
    assert abs(estimate_jpeg_quality(im) - q) <= 1


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        decode(tmp_path / "nope.png")
    with pytest.raises(DecodeError, match="directory"):
        decode(tmp_path)


def test_arrays_and_unsupported_types():
    assert decode(np.zeros((5, 6), np.uint8)).pixels.shape == (5, 6, 3)
    assert decode(np.ones((5, 6, 3), np.float32)).pixels.max() == 255
    with pytest.raises(DecodeError, match="H x W x 3"):
        decode(np.zeros((2, 5, 6, 3), np.uint8))
    with pytest.raises(DecodeError, match="unsupported"):
        decode(12345)
