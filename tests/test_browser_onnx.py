"""Scoring on the device, in a real headless browser: the page's "score on this device" mode runs the
shipped detectors' ONNX graphs in onnxruntime-web (WebAssembly) with the preprocessing, calibration
and verdict rule reimplemented in JavaScript (serve/static/local.js), and must give the records that
Python gives (the torch step in float32, the precision the page computes in), without uploading the image.

What is compared, per image:
- the views (the uint8 model inputs, after decoding, resizing or cropping, padding, shifts and
  mirrors): PNG must match Pillow's exactly; JPEG is decoded by the browser's own decoder, so its
  pixels are measured and allowed `JPEG_PIXELS` levels (measured: identical, 0 levels, in Debian's
  Chromium, whose libjpeg-turbo uses the same integer IDCT and "fancy" chroma upsampling as Pillow's);
- p_fake within `P_TOLERANCE`, the same verdict, model and preprocessing note.
P_TOLERANCE = 1e-3 where the views are identical: the only difference left is float32 arithmetic
(ONNX Runtime's WebAssembly kernels against torch's; the export checks |logit difference| <= 1e-4),
measured at most 5e-7 in p_fake. A decoder one level apart is not a small difference for these
detectors: +-1 level of noise on every pixel moves cifake's p_fake by up to 7.3e-3 (+-2: 1.3e-2) on
the examples, so a JPEG whose views differ is held to `P_TOLERANCE_DECODED` instead, and its
verdict is compared only away from the decision boundaries. Measured figures are printed (pytest -s)
and written in docs/SERVING.md.

Uses Debian's chromium (scripts/setup-test-extras.sh) through Playwright; skipped when it is absent.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_live import live_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
P_TOLERANCE = 1e-3
JPEG_PIXELS = 2  # largest |difference| of a JPEG view's pixel allowed between the browser's decoder and Pillow's
P_TOLERANCE_DECODED = 2.5e-2  # |dp| allowed for a JPEG the browser decoded differently (within JPEG_PIXELS)


def _why_skip() -> str | None:
    if not os.path.exists(CHROMIUM):
        return (f"no browser: {CHROMIUM} is missing (scripts/setup-test-extras.sh installs Debian's chromium "
                "through apt-get as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no browser driver: the playwright package is not installed (pip install -e '.[test]')"
    for extra in ("onnx", "onnxruntime"):
        try:
            __import__(extra)
        except ImportError:
            return f"the server exports the models with {extra}, which is not installed (pip install -e '.[onnx]')"
    from realjudge.bundle import shipped_names

    if not {"cifake", "natural"} <= set(shipped_names()):
        return "the shipped cifake and natural detectors are not installed"
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")


def _picture(w: int, h: int, seed: int) -> np.ndarray:
    """Smooth gradients, noise and a faint one-pixel checkerboard: every resampling weight matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / w * rng.uniform(2, 6) + rng.uniform(0, 6)), np.cos(y / h * rng.uniform(2, 6)),
                     np.sin((x + y) / (w + h) * rng.uniform(3, 9))], -1)
    img = 127 + 100 * base + rng.normal(0, 12, (h, w, 3)) + (((x + y) % 2) * 2 - 1)[..., None] * 6
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """The examples (32x32 JPEGs: cifake, no resize) and generated PNGs and a JPEG for each other path."""
    root = tmp_path_factory.mktemp("browser-images")
    made = []
    for name, (w, h), fmt in [("natural-96x96.png", (96, 96), "PNG"),        # natural: a 4x4 grid of 64 px crops
                              ("natural-130x40.png", (130, 40), "PNG"),      # natural: padded (reflect) to 130x64
                              ("cifake-48x40.png", (48, 40), "PNG"),         # cifake: bicubic down, both passes
                              ("cifake-20x60.png", (20, 60), "PNG"),         # cifake: up in x, down in y
                              ("natural-120x90.jpg", (120, 90), "JPEG")]:    # natural, a 4:2:0 JPEG at q 90
        path = root / name
        Image.fromarray(_picture(w, h, len(made))).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        made.append(path)
    # Transparency, composited over white by both decoders; an EXIF orientation, applied by both.
    alpha = np.tile(np.linspace(0, 255, 100).astype(np.uint8), (90, 1))[..., None]
    Image.fromarray(np.concatenate([_picture(100, 90, 7), alpha], -1), "RGBA").save(root / "natural-alpha.png")
    rotated = Image.fromarray(_picture(100, 80, 8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: 80x100 once applied
    rotated.save(root / "natural-exif-rotated.jpg", quality=90, exif=exif.tobytes())
    made += [root / "natural-alpha.png", root / "natural-exif-rotated.jpg"]
    return sorted(EXAMPLES.glob("*.jpg")) + made


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    from realjudge.serve.app import create_app
    from realjudge.serve.limits import Limits

    torch.set_num_threads(1)
    old = os.environ.get("REALJUDGE_CACHE")
    os.environ["REALJUDGE_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # an empty cache: exported on demand
    try:
        with live_server(create_app(None, Limits(), device="cpu")) as url:
            yield url
    finally:
        if old is None:
            os.environ.pop("REALJUDGE_CACHE", None)
        else:
            os.environ["REALJUDGE_CACHE"] = old


PREPARE = """async ([b64, type]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const routing = (await (await fetch("v1/models")).json()).routing;
    const prep = await RealjudgeLocal.prepare(new Blob([bytes], { type }), "", routing);
    const flat = new Uint8Array(prep.views.reduce((n, v) => n + v.length, 0));
    let o = 0;
    for (const v of prep.views) { flat.set(v, o); o += v.length; }
    let s = "";
    for (let i = 0; i < flat.length; i += 32768) s += String.fromCharCode(...flat.subarray(i, i + 32768));
    return { model: prep.spec.name, n: prep.views.length, views: btoa(s) };
}"""


def test_page_scores_on_the_device_like_python(server, images, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from realjudge.data.decode import decode
    from realjudge.detector import load_for_inputs

    started = time.monotonic()
    # The page runs the ONNX graphs in float32: Python's reference is the float32 torch step (a bfloat16
    # bundle's own step rounds its logits by up to a few hundredths).
    router = load_for_inputs(None, "cpu", precision="float32")
    expected = {p.name: r for p, r in zip(images, router.predict([str(p) for p in images]))}
    for r in expected.values():
        assert r.error is None, r.error
    requests: list[tuple[str, str]] = []
    problems: list[str] = []
    figures: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append((r.method, r.url)))
            page.goto(server + "/")
            expect(page.locator("#model option")).to_have_count(3)
            page.check("#on-device")
            # The runtime and both graphs are fetched once (an empty cache: each is exported now).
            expect(page.locator("#status")).to_have_text("Ready: images are scored on this device.", timeout=180_000)
            expect(page.locator("#privacy")).to_contain_text("not uploaded")

            # The views: the same pixels the Python policy makes from Pillow's decoding.
            for path in images:
                got = page.evaluate(PREPARE, [base64.b64encode(path.read_bytes()).decode(),
                                              "image/jpeg" if path.suffix == ".jpg" else "image/png"])
                rec = expected[path.name]
                assert got["model"] == rec.model, path.name
                views, _note = router.detectors[rec.model].policy.views(decode(str(path)).pixels)
                ref = np.stack(views)
                mine = np.frombuffer(base64.b64decode(got["views"]), np.uint8).reshape(ref.shape)
                diff = np.abs(mine.astype(int) - ref.astype(int))
                figures[path.name] = {"model": rec.model, "views": len(ref), "max_pixel_diff": int(diff.max()),
                                      "pixels_differing": float((diff > 0).mean())}
                if path.suffix == ".png":
                    assert diff.max() == 0, f"{path.name}: the browser's views differ from Python's by up to {diff.max()}"
                else:
                    assert diff.max() <= JPEG_PIXELS, f"{path.name}: JPEG pixels differ by up to {diff.max()}"

            # Scoring through the page, as a user would: pick the files, read the cards.
            broken = tmp_path / "broken.png"
            broken.write_bytes(b"this is text, not a PNG")
            before = len(requests)
            page.set_input_files("#files", [str(p) for p in images] + [str(broken)])
            page.wait_for_function("n => document.querySelectorAll('.card.on-device:not(.pending)').length >= n",
                                   arg=len(images) + 1, timeout=120_000)
            expect(page.locator("#status")).to_have_text(f"Done: {len(images) + 1} images.")
            bad = page.locator(".card", has_text="broken.png")
            expect(bad.locator(".verdict")).to_have_text("could not score")
            expect(bad.locator(".meaning")).to_contain_text("not an image this browser can decode")
            for path in images:
                card = page.locator(".card", has_text=path.name)
                expect(card.locator(".on-device-note")).to_have_text("scored on this device; the image was not uploaded")
                expect(card.locator(".details")).to_contain_text("explanations run on the server")
                rec = expected[path.name]
                p_fake = float(card.get_attribute("data-p-fake"))
                verdict = card.get_attribute("data-verdict")
                expect(card.locator(".verdict")).to_have_text(verdict)
                expect(card.locator(".details")).to_contain_text(rec.preprocess)
                assert card.get_attribute("data-model") == rec.model
                figures[path.name] |= {"p_python": rec.p_fake, "p_browser": p_fake, "dp": abs(p_fake - rec.p_fake),
                                       "verdict": verdict, "verdict_python": rec.verdict}
            during = requests[before:]
        finally:
            browser.close()

    print(f"\n{'image':24} {'model':8} views  max|dpixel|  p_python   p_browser  |dp|      verdict")
    for name, f in figures.items():
        print(f"{name:24} {f['model']:8} {f['views']:5}  {f['max_pixel_diff']:11}  {f['p_python']:.6f}   "
              f"{f['p_browser']:.6f}   {f['dp']:.1e}  {f['verdict']}")
    print(f"max |dp| {max(f['dp'] for f in figures.values()):.2e}; test took {time.monotonic() - started:.1f} s")
    for name, f in figures.items():
        tol = P_TOLERANCE if f["max_pixel_diff"] == 0 else P_TOLERANCE_DECODED
        assert f["dp"] <= tol, f"{name}: p_fake {f['p_browser']} in the browser, {f['p_python']} in Python"
        cal = router.detectors[f["model"]].calibration
        edges = [cal.threshold, *cal.uncertain_band]
        if f["max_pixel_diff"] == 0 or min(abs(f["p_python"] - e) for e in edges) > tol:
            assert f["verdict"] == f["verdict_python"], name
    # Nothing was uploaded: no POST at all, and while scoring not a single request (the page fetched
    # the runtime and the graphs when the mode was switched on).
    assert [r for r in requests if r[0] != "GET"] == []
    assert not any("/v1/detect" in url or "/v1/explain" in url for _m, url in requests)
    assert [url for _m, url in during if not url.startswith(("blob:", "data:"))] == []
    onnx = [url for _m, url in requests if url.endswith("/model.onnx")]
    assert sorted(onnx) == [f"{server}/v1/models/cifake/model.onnx", f"{server}/v1/models/natural/model.onnx"]
    assert all(url.startswith((server, "blob:", "data:")) for _m, url in requests)
    assert problems == []


VIEWS = """([cases, order]) => cases.map((c) => {
    const rgb = Uint8Array.from(atob(c.rgb), (ch) => ch.charCodeAt(0));
    const out = RealjudgeLocal.views({ w: c.w, h: c.h, rgb }, c.policy, order);
    const flat = new Uint8Array(out.views.reduce((n, v) => n + v.length, 0));
    let o = 0;
    for (const v of out.views) { flat.set(v, o); o += v.length; }
    let s = "";
    for (let i = 0; i < flat.length; i += 32768) s += String.fromCharCode(...flat.subarray(i, i + 32768));
    return { views: btoa(s), note: out.note };
})"""


def test_browser_views_match_python_on_random_sizes(server):
    """The JavaScript views of random images, sizes and policies (every resize filter it implements,
    up- and downscaling on each axis, crops from 1 to a 5x5 grid, every padding mode, shifts and
    mirrors) are Python's, pixel for pixel, and so is the note."""
    from playwright.sync_api import sync_playwright

    from realjudge.preprocess import InputPolicy
    from realjudge.serve.browser import pass_order

    rng = np.random.default_rng(0)
    cases, expected = [], []
    for i in range(120):
        w, h = (int(v) for v in rng.integers(1, 160, 2))
        if i % 2:
            policy = InputPolicy(kind="resize", size=int(rng.choice([16, 32, 40])),
                                 filter=["bicubic", "bicubic", "bilinear", "lanczos", "box"][i // 2 % 5],
                                 mirror=bool(i % 3), shifts=((1, 0), (-1, 2)) if i % 5 < 2 else ())
        else:
            policy = InputPolicy(kind="crop", size=int(rng.choice([16, 24, 64])), crops=int(rng.choice([1, 3, 5, 9, 16, 25])),
                                 pad=["reflect", "symmetric", "edge", "wrap"][i // 2 % 4], mirror=bool(i % 3),
                                 shifts=((2, -1),) if i % 4 == 0 else ())
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if i % 3 else _picture(w, h, i)
        views, note = policy.views(img)
        cases.append({"policy": policy.to_json(), "w": w, "h": h, "rgb": base64.b64encode(img.tobytes()).decode()})
        expected.append((np.stack(views), note))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            got = page.evaluate(VIEWS, [cases, pass_order()])
        finally:
            browser.close()
    for case, (ref, note), mine in zip(cases, expected, got):
        views = np.frombuffer(base64.b64decode(mine["views"]), np.uint8)
        where = f"{case['policy']} on {case['w']}x{case['h']}"
        assert views.size == ref.size, where
        assert np.array_equal(views.reshape(ref.shape), ref), where
        assert mine["note"] == note, where

