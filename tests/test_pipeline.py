"""The one scoring path (realjudge.pipeline): each input decoded once, scored in one batch, the size
rule and the verdict rule applied once, whichever entry point asks (the project's issue 16)."""

import json

import numpy as np
import pytest

from conftest import make_images, save
from realjudge import pipeline
from realjudge.detector import load
from realjudge.router import Router


def _count(monkeypatch, owner, attr):
    calls = []
    original = getattr(owner, attr)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attr, counted)
    return calls


@pytest.fixture()
def six(tmp_path):
    reals, fakes = make_images(3, seed=5)
    return [save(a, tmp_path / "in" / f"{i}.png") for i, a in enumerate(reals + fakes)]


def _cli(*args):
    from click.testing import CliRunner

    from realjudge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_detect_explain_decodes_and_scores_each_image_once(tiny_bundle, six, tmp_path, monkeypatch):
    import realjudge.data.decode as decode_module
    from realjudge.detector import Detector

    decodes = _count(monkeypatch, decode_module, "decode_bytes")
    forwards = _count(monkeypatch, Detector, "logits")
    plain = _cli("detect", "--model", tiny_bundle, "--format", "jsonl", "--workers", "0", six[0].parent)
    assert plain.exit_code == 0 and (len(decodes), len(forwards)) == (6, 1)
    decodes.clear(), forwards.clear()
    res = _cli("detect", "--model", tiny_bundle, "--format", "jsonl", "--workers", "0",
               "--explain", tmp_path / "maps", six[0].parent)
    assert res.exit_code == 0, res.output
    assert (len(decodes), len(forwards)) == (6, 1)  # the overlays are drawn on the pixels already decoded
    assert len(list((tmp_path / "maps").glob("*.png"))) == 6
    assert res.stdout == plain.stdout  # explaining changes no record


def test_the_service_routes_each_upload_once_and_builds_no_router_per_request(tiny_bundle, six, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from realjudge.serve.app import create_app

    det = load(str(tiny_bundle), "cpu")
    with TestClient(create_app(Router.single(det))) as client:
        routes = _count(monkeypatch, Router, "route")
        routers = _count(monkeypatch, Router, "__init__")
        decodes = _count(monkeypatch, pipeline, "decode")
        files = [("file", (p.name, p.read_bytes(), "image/png")) for p in six[:3]]
        r = client.post("/v1/detect", files=files)
        assert r.status_code == 200 and len(r.json()["results"]) == 3
        assert (len(routes), len(routers), len(decodes)) == (3, 0, 3)


def test_api_records_equal_cli_records(tiny_bundle, six):
    res = _cli("detect", "--model", tiny_bundle, "--format", "jsonl", *six)
    cli = [json.loads(line) for line in res.stdout.splitlines()]
    api = [r.to_dict() for r in load(str(tiny_bundle), "cpu").predict([str(p) for p in six])]
    assert cli == api


def test_one_verdict_rule_with_the_band_only_at_the_calibrated_threshold(tiny_bundle, six):
    det = load(str(tiny_bundle), "cpu")
    cal = det.calibration
    for threshold in (None, 0.3, cal.threshold):
        for r in det.predict([str(p) for p in six], threshold=threshold):
            t = cal.threshold if threshold is None else threshold
            assert r.threshold == t and r.verdict == cal.verdict(r.p_fake, t)
    lo, hi = cal.uncertain_band
    inside = (lo + hi) / 2
    if lo < inside < hi:
        assert cal.verdict(inside) == "uncertain"
        assert cal.verdict(inside, 0.0 if cal.threshold > 0 else 1.0) != "uncertain"


def test_thresholds_are_checked_by_one_rule_everywhere(tiny_bundle, six):
    from realjudge.calibrate import check_threshold
    from realjudge.errors import UsageError

    det = load(str(tiny_bundle), "cpu")
    for bad in (1.5, -0.1, float("nan"), "x"):
        with pytest.raises(UsageError, match="threshold must be"):
            check_threshold(bad)
        with pytest.raises(UsageError, match="threshold must be"):
            det.predict(str(six[0]), threshold=bad)
        with pytest.raises(UsageError, match="threshold must be"):
            load(str(tiny_bundle), "cpu", threshold=bad)
        res = _cli("detect", "--model", tiny_bundle, "-t", bad, six[0])
        assert res.exit_code == 2 and "threshold must be" in res.output


def test_prepare_never_raises_and_names_what_it_could_not_read(tiny_bundle):
    router = Router.single(load(str(tiny_bundle), "cpu"))
    for obj in (b"junk", np.zeros((0, 0, 3), np.uint8), "/no/such/file.png", object()):
        p = pipeline.prepare(obj, None if isinstance(obj, str) else "x", router)
        assert p.error and p.views is None and p.model is None
    good = pipeline.prepare(make_images(1)[0][0], "a", router, keep_pixels=True)
    assert good.error is None and good.model == router.small and good.pixels.shape == (32, 32, 3)
    assert good.views.shape[1:] == (32, 32, 3)


def test_cpu_passes_split_a_batch_without_changing_a_logit(tiny_bundle, monkeypatch):
    """The torch step on the CPU scores a batch in passes of CPU_PASS_PIXELS: the same logits, in order."""
    from realjudge import detector

    det = load(str(tiny_bundle), device="cpu")
    views = np.random.default_rng(1).integers(0, 256, (11, 32, 32, 3), dtype=np.uint8)
    whole = det.logits(views)
    calls = []
    real = det._folded.forward
    monkeypatch.setattr(det._folded, "forward", lambda x: calls.append(len(x)) or real(x))
    monkeypatch.setattr(detector, "CPU_PASS_PIXELS", 4 * 32 * 32)
    np.testing.assert_allclose(det.logits(views), whole, rtol=1e-5, atol=1e-5)
    assert calls == [4, 4, 3]
