"""The HTTP service through FastAPI's TestClient: good, bad, hostile and oversized inputs, load limits."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import make_images, png_header_only  # noqa: E402
from serve_live import Held  # noqa: E402
from realjudge.detector import Detector  # noqa: E402
from realjudge.router import Router  # noqa: E402
from realjudge.serve.app import create_app  # noqa: E402
from realjudge.serve.limits import Limits  # noqa: E402
from realjudge.serve.scoring import load_models  # noqa: E402
from serve_live import live_server  # noqa: E402

torch.set_num_threads(1)
VERDICTS = {"fake", "real", "uncertain"}


def encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def router(tiny_bundle) -> Router:
    return load_models([str(tiny_bundle)], device="cpu")


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    reals, fakes = make_images(2, seed=3)
    return {"real.png": encode(reals[0]), "fake.jpg": encode(fakes[0], "JPEG", quality=95),
            "big.png": encode(make_images(1, seed=4, size=128)[0][0])}


@pytest.fixture
def client(router):
    with TestClient(create_app(router, Limits(max_files=4, max_upload_bytes=1_000_000))) as c:
        yield c


def files(*pairs):
    return [("file", (name, data, "application/octet-stream")) for name, data in pairs]


def assert_error(resp, status: int, *words: str):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    for w in words:
        assert w in body["error"], body["error"]
    return body


# --------------------------------------------------------------------------- good inputs
def test_healthz_and_models(client, tiny_bundle):
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "models": ["tiny"], "admitted": 0, "capacity": 18}
    body = client.get("/v1/models").json()
    assert body["routing"]["default"] == "tiny"
    (model,) = body["models"]
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    assert model["name"] == "tiny" and model["arch"] == "cifake-cnn"
    assert model["threshold"] == pytest.approx(meta["threshold"])
    assert model["uncertain_band"] == pytest.approx(meta["uncertain_band"])
    assert model["card"] == (tiny_bundle / "MODEL_CARD.md").read_text()
    assert body["limits"]["max_files"] == 4


def test_detect_multipart_scores_each_image_in_order(client, images, router):
    resp = client.post("/v1/detect", files=files(("real.png", images["real.png"]), ("fake.jpg", images["fake.jpg"])))
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["path"] for r in results] == ["real.png", "fake.jpg"]
    expected = router.detectors["tiny"].predict([images["real.png"], images["fake.jpg"]])
    for r, want in zip(results, expected):
        assert r["error"] is None and r["verdict"] in VERDICTS and r["model"] == "tiny"
        assert r["p_fake"] == pytest.approx(want.p_fake, abs=1e-6)
        assert r["threshold"] == pytest.approx(router.detectors["tiny"].threshold)
        assert r["timings"]["decode_ms"] >= 0 and r["timings"]["model_ms"] > 0
    assert results[1]["facts"]["format"] == "JPEG"
    assert resp.json()["timings"]["total_ms"] > 0


def test_detect_json_base64_with_options(client, images):
    b64 = base64.b64encode(images["big.png"]).decode()
    body = {"images": [{"name": "plain", "data": b64},
                       {"name": "wrapped", "data": "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))},
                       {"data": "data:image/png;base64," + b64}],
            "model": "tiny", "threshold": 0.0}
    resp = client.post("/v1/detect", json=body)
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["path"] for r in results] == ["plain", "wrapped", "image-3"]
    assert {r["verdict"] for r in results} == {"fake"} and {r["threshold"] for r in results} == {0.0}
    assert len({r["p_fake"] for r in results}) == 1
    assert results[0]["preprocess"].startswith("resized 128x128->32x32")


def test_threshold_from_query_and_form(client, images):
    one = files(("real.png", images["real.png"]))
    high = client.post("/v1/detect?threshold=1", files=one).json()["results"][0]
    assert high["threshold"] == 1.0 and high["verdict"] == "real"
    form = client.post("/v1/detect?threshold=1", data={"threshold": "0"}, files=one).json()["results"][0]
    assert form["threshold"] == 0.0 and form["verdict"] == "fake"  # the body's field wins


# --------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("name, reason", [
    ("text.jpg", "not an image"), ("truncated.jpg", "truncated"), ("empty.jpg", "empty file"),
    ("bomb.png", "too large"),
])
def test_bad_file_is_a_clean_422(client, bad_folder, name, reason):
    resp = client.post("/v1/detect", files=files((name, (bad_folder / name).read_bytes())))
    body = assert_error(resp, 422, name, reason)
    assert body["results"][0]["p_fake"] is None and body["results"][0]["error"] == body["error"]


def test_bad_file_in_a_batch_does_not_fail_the_others(client, bad_folder, images):
    resp = client.post("/v1/detect", files=files(("good.png", images["real.png"]),
                                                 ("text.jpg", (bad_folder / "text.jpg").read_bytes())))
    assert resp.status_code == 200
    good, bad = resp.json()["results"]
    assert good["verdict"] in VERDICTS and bad["p_fake"] is None and "not an image" in bad["error"]


def test_every_odd_but_valid_file_is_scored(client, bad_folder):
    names = ["cmyk.jpg", "grey16.png", "palette.png", "grey_alpha.png"]
    resp = client.post("/v1/detect", files=files(*[(n, (bad_folder / n).read_bytes()) for n in names]))
    assert resp.status_code == 200
    assert all(r["error"] is None and r["verdict"] in VERDICTS for r in resp.json()["results"])


def test_pixel_limit_applies(router, images):
    with TestClient(create_app(router, Limits(max_pixels=64 * 64))) as c:
        assert_error(c.post("/v1/detect", files=files(("big.png", images["big.png"]))), 422, "big.png", "too large")
        assert c.post("/v1/detect", files=files(("real.png", images["real.png"]))).status_code == 200


def test_bomb_header_via_json(client):
    data = base64.b64encode(png_header_only(100_000, 100_000)).decode()
    assert_error(client.post("/v1/detect", json={"images": [{"name": "b.png", "data": data}]}), 422, "too large")


# --------------------------------------------------------------------------- bad requests
def _multipart(body: bytes, boundary: str = "xyz") -> dict:
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


@pytest.mark.parametrize("kwargs, status, words", [
    ({"json": {"images": [{"name": "a", "data": "not base64!"}]}}, 400, ["images[0].data", "base64"]),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, ["not valid JSON"]),
    ({"json": [1, 2]}, 400, ["must be an object"]),
    ({"json": {"images": []}}, 400, ["non-empty list"]),
    ({"json": {"images": [{"data": "AAAA"}], "colour": 1}}, 400, ["unknown JSON field", "colour"]),
    ({"json": {"images": [{"data": 5}]}}, 400, ["images[0]"]),
    ({"json": {"images": [{"data": "AAAA"}], "threshold": "high"}}, 400, ["threshold"]),
    ({"json": {"images": [{"data": "AAAA"}], "threshold": 3}}, 400, ["threshold", "between 0 and 1"]),
    ({"json": {"images": [{"data": "AAAA"}], "model": "nope"}}, 400, ["unknown model 'nope'", "tiny"]),
    ({"json": {"images": [{"data": "AAAA"}] * 5}}, 413, ["too many images", "limit is 4"]),
    ({"data": {"model": "tiny"}, "files": files(*[("a.png", b"x")] * 5)}, 413, ["too many images"]),
    ({"data": {"threshold": "abc"}, "files": files(("a.png", b"x"))}, 400, ["threshold"]),
    ({"data": {"colour": "red"}, "files": files(("a.png", b"x"))}, 400, ["unknown form field 'colour'"]),
    ({"data": {"model": "tiny"}}, 415, ["unsupported content type"]),
    (_multipart(b"--xyz--\r\n"), 400, ["no images"]),
    (_multipart(b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"), 400, ["malformed multipart"]),
    ({"content": b"abc", "headers": {"content-type": "multipart/form-data"}}, 400, ["boundary"]),
    ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, ["text/plain"]),
    ({"content": b"x" * 1_000_001, "headers": {"content-type": "application/json"}}, 413, ["upload too large"]),
    ({"content": iter([b"x" * 400_000] * 3), "headers": {"content-type": "application/json"}}, 413, ["upload too large"]),
])
def test_bad_request_is_a_clean_4xx(client, kwargs, status, words):
    assert_error(client.post("/v1/detect", **kwargs), status, *words)


def test_bad_query_parameters_and_routes(client, images):
    one = files(("real.png", images["real.png"]))
    assert_error(client.post("/v1/detect?threshold=1.5", files=one), 400, "query parameter 'threshold'")
    assert_error(client.post("/v1/detect?model=other", files=one), 400, "unknown model 'other'")
    assert_error(client.post("/v1/explain?format=gif", files=one), 400, "format")
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/detect"), 405)


def test_uploads_stay_in_memory(client, images, monkeypatch, tmp_path):
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = encode((np.random.default_rng(0).random((500, 500, 3)) * 255).astype(np.uint8))
    assert len(big) > 600_000
    assert client.post("/v1/detect", files=files(("noise.png", big))).status_code == 200
    assert list(spool.iterdir()) == []


# --------------------------------------------------------------------------- explain
def test_explain_png(client, images, router):
    resp = client.post("/v1/explain", files=files(("fake.jpg", images["fake.jpg"])))
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(resp.content))
    assert min(overlay.size) >= 256 and overlay.mode == "RGB"
    rec = router.detectors["tiny"].predict(images["fake.jpg"])
    assert resp.headers["x-realjudge-verdict"] == rec.verdict
    assert float(resp.headers["x-realjudge-p-fake"]) == pytest.approx(rec.p_fake, abs=1e-5)
    assert resp.headers["x-realjudge-model"] == "tiny" and resp.headers["x-realjudge-method"] == "gradcam"
    assert resp.headers["x-realjudge-target"] in ("fake", "real")


def test_explain_json(client, images):
    data = base64.b64encode(images["big.png"]).decode()
    resp = client.post("/v1/explain?format=json&threshold=0", json={"images": [{"name": "big.png", "data": data}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["record"]["path"] == "big.png" and body["record"]["verdict"] == "fake"
    assert body["method"] == "gradcam" and body["target"] == "fake"
    png = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
    assert png.size == (body["width"], body["height"])
    assert body["record"]["timings"]["explain_ms"] > 0


def test_explain_refusals(client, images, bad_folder):
    two = files(("a.png", images["real.png"]), ("b.png", images["real.png"]))
    assert_error(client.post("/v1/explain", files=two), 400, "exactly one image")
    assert_error(client.post("/v1/explain", files=files(("t.jpg", (bad_folder / "truncated.jpg").read_bytes()))),
                 422, "t.jpg", "truncated")
    assert_error(client.post("/v1/explain?method=magic", files=files(("a.png", images["real.png"]))),
                 400, "unknown explanation method")


def test_concurrent_detect_and_explain(router, images):
    """Grad-CAM hooks the shared network: predictions on other threads must not disturb it."""
    with TestClient(create_app(router, Limits(workers=2, queue=16))) as c:
        def call(i):
            if i % 2:
                return c.post("/v1/explain", files=files(("a.png", images["real.png"]))).status_code
            return c.post("/v1/detect", files=files(*[("a.png", images["real.png"])] * 16)).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(call, range(40))) == [200] * 40


# --------------------------------------------------------------------------- load limits
@pytest.fixture
def held(router):
    det = router.detectors["tiny"]
    gate = Held(det.model)
    return gate, Router({"tiny": Detector(gate, det.info, det.device)}, "tiny", "tiny")


def test_503_with_retry_after_when_the_queue_is_full(held, images):
    gate, slow_router = held
    one = files(("real.png", images["real.png"]))
    with TestClient(create_app(slow_router, Limits(workers=1, queue=1))) as c:
        gate.armed = True
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(c.post, "/v1/detect", files=one)
            assert gate.entered.wait(10)
            waiting = pool.submit(c.post, "/v1/detect", files=one)
            deadline = time.monotonic() + 10
            while c.get("/healthz").json()["admitted"] < 2:  # one running, one queued
                assert time.monotonic() < deadline, "the second request was never queued"
                time.sleep(0.02)
            refused = c.post("/v1/detect", files=one)
            assert_error(refused, 503, "busy")
            assert int(refused.headers["retry-after"]) >= 1
            assert c.get("/healthz").status_code == 200  # the event loop still answers
            gate.release.set()
            assert running.result(30).status_code == 200
            assert waiting.result(30).status_code == 200
        assert c.post("/v1/detect", files=one).status_code == 200


def test_request_time_limit(held, images):
    gate, slow_router = held
    with TestClient(create_app(slow_router, Limits(workers=1, queue=2, request_timeout=0.5))) as c:
        gate.armed = True
        started = time.monotonic()
        resp = c.post("/v1/detect", files=files(("real.png", images["real.png"])))
        assert time.monotonic() - started < 10
        assert_error(resp, 503, "0.5 s")
        assert int(resp.headers["retry-after"]) >= 1
        gate.release.set()


def test_slow_upload_gets_408(router):
    with live_server(create_app(router, Limits(request_timeout=0.5))) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"images\":")
            reply = b""
            while b'"status":408' not in reply and (chunk := s.recv(65536)):
                reply += chunk
    reply = reply.decode("latin-1")
    assert reply.startswith("HTTP/1.1 408"), reply
    assert "did not finish within 0.5 s" in reply


# --------------------------------------------------------------------------- page, docs, CLI
def test_page_assets_and_docs_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("static/app.js", "static/style.css"):
        assert asset in page.text
    texts = [page.text]
    for path in ("/static/app.js", "/static/style.css", "/docs", "/static/docs.js"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        texts.append(resp.text)
    assert not any("http://" in t or "https://" in t or "//cdn" in t for t in texts)
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "/v1/explain" in spec["paths"] and "/v1/models" in spec["paths"]


def test_cli_refuses_a_missing_model_before_listening(tmp_path):
    res = subprocess.run([sys.executable, "-m", "realjudge", "serve", "--model", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "unknown model" in res.stderr and "Traceback" not in res.stderr


def test_explain_says_which_part_was_explained(client, images):
    resp = client.post("/v1/explain", files=files(("big.png", images["big.png"])))
    assert resp.status_code == 200
    assert resp.headers["x-realjudge-explained"].startswith("the whole image (resized 128x128->32x32")
    assert float(resp.headers["x-realjudge-coverage"]) == 1.0
    body = client.post("/v1/explain?format=json", files=files(("big.png", images["big.png"]))).json()
    assert body["explained"].startswith("the whole image") and body["coverage"] == 1.0 and body["crops"] == []


def test_pixel_limit_default_is_the_cli_one():
    from realjudge.data.decode import DEFAULT_MAX_PIXELS

    assert Limits().max_pixels == DEFAULT_MAX_PIXELS == 64_000_000
