"""One routing rule for every entry point, warnings in records, error records and exit codes, hints,
`models NAME`, the uncertain band's fit, whole-image explanations (the project's issue 17).

The shipped `natural` bundle changes often: nothing here asserts what it answers on an image,
only which model answered, the fields and the warnings.
"""

import csv
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import realjudge
from conftest import make_images, save
from realjudge.errors import UsageError

SMALL, LARGE = 32, 256


def run_process(*args):
    return subprocess.run([sys.executable, "-m", "realjudge", *args], capture_output=True, text=True, timeout=600)


def run(*args):
    """The command in this process (no interpreter start-up): exit code, stdout and stderr apart."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from realjudge.cli import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return SimpleNamespace(returncode=res.exit_code, stdout=res.stdout, stderr=res.stderr)


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """small/s.png (32x32) and large/l.png (256x256)."""
    root = tmp_path_factory.mktemp("sizes")
    small = save(make_images(1, seed=11, size=SMALL)[0][0], root / "small" / "s.png")
    large = save(make_images(1, seed=12, size=LARGE)[0][0], root / "large" / "l.png")
    return small, large


def test_every_entry_point_routes_alike(two_sizes, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from realjudge.serve.app import create_app

    small, large = two_sizes
    want = {small.name: "cifake", large.name: "natural"}

    res = run_process("detect", str(small), str(large), "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    assert {r["path"].rsplit("/", 1)[-1]: r["model"] for r in map(json.loads, res.stdout.splitlines())} == want

    assert {r.path.rsplit("/", 1)[-1]: r.model for r in realjudge.detect([str(small), str(large)])} == want
    router = realjudge.load()
    assert {r.path.rsplit("/", 1)[-1]: r.model for r in router.predict([str(small), str(large)])} == want
    assert all(not r.warnings for r in router.predict([str(small), str(large)]))

    res = run("evaluate", "--real", str(small.parent), "--fake", str(large.parent), "--out", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["models"] == {"cifake": 1, "natural": 1} and m["model"] == "auto"
    assert m["per_model"]["cifake"]["n_real"] == 1 and m["per_model"]["natural"]["n_fake"] == 1

    res = run("explain", str(small), str(large), "--out", str(tmp_path / "maps"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "[cifake]" in lines[0] and "[natural]" in lines[1]

    with TestClient(create_app(router)) as client:
        for path, model in ((small, "cifake"), (large, "natural")):
            r = client.post("/v1/detect", files={"file": (path.name, path.read_bytes(), "image/png")})
            assert r.status_code == 200 and r.json()["results"][0]["model"] == model
            r = client.post("/v1/explain", files={"file": (path.name, path.read_bytes(), "image/png")})
            assert r.status_code == 200 and r.headers["X-Realjudge-Model"] == model


def test_load_without_a_name_is_the_router_and_bad_names_are_usage_errors():
    from realjudge.router import Router

    assert isinstance(realjudge.load(), Router) and isinstance(realjudge.load("auto"), Router)
    assert realjudge.load().name == "auto"
    from realjudge.detector import load_for_inputs

    assert set(load_for_inputs("auto").detectors) == {"cifake", "natural"}
    with pytest.raises(UsageError):
        realjudge.load(42)
    with pytest.raises(UsageError):
        realjudge.detect(np.zeros((8, 8, 3), np.uint8), model=42)
    rec = realjudge.detect(np.zeros((8, 8, 3), np.uint8), model=None)
    assert rec.model == "cifake" and rec.warnings == []


def test_naming_cifake_for_a_large_image_warns_everywhere(two_sizes):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from realjudge.serve.app import create_app

    small, large = two_sizes
    rec = realjudge.load("cifake").predict(str(large))
    assert rec.model == "cifake" and len(rec.warnings) == 1 and "resized to 32x32" in rec.warnings[0]
    assert realjudge.load("cifake").predict(str(small)).warnings == []
    res = run("detect", str(large), "--model", "cifake", "--format", "json")
    assert res.returncode == 0 and "resized to 32x32" in json.loads(res.stdout)[0]["warnings"][0]
    assert "realjudge: warning:" in res.stderr
    res = run("detect", str(large), str(small), "--model", "cifake", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert "resized to 32x32" in rows[0]["warnings"] and rows[1]["warnings"] == ""
    with TestClient(create_app(realjudge.load())) as client:
        r = client.post("/v1/detect?model=cifake", files={"file": (large.name, large.read_bytes(), "image/png")})
        assert "resized to 32x32" in r.json()["results"][0]["warnings"][0]


def test_error_records_name_no_model_and_reach_stderr_in_the_table(two_sizes, tmp_path):
    small, _ = two_sizes
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    junk_zip = tmp_path / "junk.zip"
    junk_zip.write_text("this is text, not a zip")
    rec = realjudge.detect(b"junk")
    assert rec.error and rec.model is None and rec.threshold is None
    res = run_process("detect", str(small), str(bad), str(junk_zip))  # a real process: stderr as a user sees it
    assert res.returncode == 1
    assert res.stdout.splitlines()[0].split()[:2] == ["verdict", "p_fake"]  # the table has a header row
    err = [line for line in res.stderr.splitlines() if line.startswith("realjudge: error:")]
    assert len(err) == 2 and "bad.jpg" in err[0] and "junk.zip: corrupt archive" in err[1]
    res = run("detect", str(small), str(bad), "--format", "jsonl")
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert recs[1]["model"] is None and recs[1]["threshold"] is None and recs[0]["model"] == "cifake"


def test_missing_path_rule(two_sizes, tmp_path):
    small, _ = two_sizes
    res = run("detect", str(small), str(tmp_path / "gone.png"), "--format", "jsonl")
    assert res.returncode == 1 and "gone.png: no such file" in res.stderr  # some inputs scored: 1
    res = run("detect", str(tmp_path / "gone.png"))
    assert res.returncode == 2  # nothing to score: 2


def test_models_name_prints_card_calibration_and_training_data(tiny_bundle):
    res = run("models", "cifake")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("# cifake") and "## Calibration (bundle.json)" in res.stdout
    assert "threshold" in res.stdout and "uncertain band" in res.stdout and "cifake-train" in res.stdout
    res = run("models", str(tiny_bundle), "--json")
    body = json.loads(res.stdout)
    assert body["name"] == "tiny" and body["calibration"]["uncertain_band"] and body["training_data"]["sources"]
    res = run("models", "no-such-model")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_evaluate_and_audit_take_real_and_fake_folders_and_name_unreadable_files(tiny_bundle, tiny_flat, tmp_path):
    res = run("evaluate", "--real", str(tiny_flat / "real"), "--fake", str(tiny_flat / "fake"), "--model", str(tiny_bundle))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["models"] == {"tiny": 96}
    res = run("evaluate", str(tiny_flat / "real"), "--model", str(tiny_bundle))
    assert res.returncode == 2 and "--real/--fake" in res.stderr  # the hint names options that exist
    (tmp_path / "r").mkdir()
    for i, a in enumerate(make_images(3, seed=2)[0]):
        save(a, tmp_path / "r" / f"{i}.png")
    (tmp_path / "r" / "broken.png").write_bytes(b"\x89PNG nope")
    res = run("data", "audit", "--real", str(tmp_path / "r"), "--fake", str(tiny_flat / "fake"))
    assert res.returncode == 1
    assert "broken.png" in res.stdout and any("broken.png" in x for x in res.stderr.splitlines())


def test_error_band_is_never_empty_and_reports_coverage():
    from realjudge.calibrate import band_figures, calibrate, fit_band, refit_band

    rng = np.random.default_rng(0)
    # Separable except two reals scored far on the fake side: the old rule gives an empty band.
    logits = np.r_[rng.normal(-5, 1, 200), [6.0, 6.5], rng.normal(5, 1, 200)]
    y = np.r_[np.zeros(202), np.ones(200)]
    cal = calibrate(logits, y)
    p = cal.probability(logits)
    lo_old, hi_old = fit_band(p, y, cal.threshold)
    assert lo_old == hi_old  # the problem
    lo, hi = cal.uncertain_band
    t_lo, t_hi = cal.band_fit["threshold_interval"]
    assert lo < cal.threshold < hi and lo <= t_lo <= t_hi <= hi and t_hi > t_lo
    fit = cal.band_fit
    assert fit["rule"] == "local error rate" and fit["coverage"] == pytest.approx(band_figures(p, y, cal.threshold, (lo, hi))["coverage"])
    assert 0 < fit["coverage"] <= 1 and fit["accuracy_outside"] == pytest.approx(200 / 201, abs=0.01)
    # Overlapping classes: the band holds the scores where verdicts are often wrong.
    logits = np.r_[rng.normal(-1.5, 1.5, 1000), rng.normal(1.5, 1.5, 1000)]
    y = np.r_[np.zeros(1000), np.ones(1000)]
    cal = calibrate(logits, y)
    f = cal.band_fit
    assert f["error_inside"] > 0.1 > 1 - f["accuracy_outside"] and f["coverage"] < 0.9
    # Refitting keeps the threshold and the temperature.
    old = calibrate(logits, y, band_rule="target_error")
    new = refit_band(old, logits, y)
    assert (new.threshold, new.temperature) == (old.threshold, old.temperature) and new.band_fit["coverage"] < 1


def test_calibrate_command_refits_a_bundle(tiny_bundle, tiny_flat, tmp_path):
    res = run("calibrate", str(tiny_bundle), "--data", str(tiny_flat), "--out", str(tmp_path / "refit"),
              "--scores", str(tmp_path / "val.npz"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    again = run("calibrate", str(tmp_path / "refit"), "--from-scores", str(tmp_path / "val.npz"), "--out", str(tmp_path / "re2"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["new_band"] == report["new_band"]  # the same scores give the same band
    assert (tmp_path / "re2" / "MODEL_CARD.md").read_text().count("Band: ") == 1
    meta = json.loads((tmp_path / "refit" / "bundle.json").read_text())
    old = json.loads((tiny_bundle / "bundle.json").read_text())
    assert meta["calibration"]["threshold"] == old["calibration"]["threshold"]
    assert meta["calibration"]["band_fit"]["coverage"] == report["band_fit"]["coverage"]
    assert meta["uncertain_band"] == report["new_band"] and report["n_val"] == old["training"]["n_val"]
    assert "Band: " in (tmp_path / "refit" / "MODEL_CARD.md").read_text()
    assert realjudge.load(str(tmp_path / "refit")).calibration.band_fit["rule"] == "local error rate"


def test_large_images_are_explained_whole(two_sizes):
    _, large = two_sizes
    det = realjudge.load("natural")
    if det.policy.kind != "crop":
        pytest.skip("the shipped natural detector is not a crop policy")
    exp = det.explain(str(large))
    assert exp.heatmap.shape == (LARGE, LARGE) and exp.view.shape[:2] == (LARGE, LARGE)
    assert len(exp.crops) == len({(c["x"], c["y"]) for c in exp.crops}) > 1
    assert exp.coverage == pytest.approx(1.0)  # the grid spans the whole image
    assert not any("centre crop" in n for n in exp.notes) and any("every scored crop" in n for n in exp.notes)
    assert exp.overlay.width == LARGE
    from realjudge.explain import describe_explained

    assert "stitched on the full frame" in describe_explained(exp)
    big = np.zeros((1200, 1600, 3), np.uint8) + 128
    wide = det.explain(big)
    assert wide.coverage < 1 and "grey: not examined" in " ".join(wide.notes)


def test_one_pixel_limit_for_cli_and_server():
    pytest.importorskip("fastapi")
    from realjudge.data.decode import DEFAULT_MAX_PIXELS
    from realjudge.serve.limits import Limits

    assert Limits().max_pixels == DEFAULT_MAX_PIXELS


def test_corrupt_archive_is_named_as_such(tmp_path):
    from realjudge.data.inputs import expand_inputs

    z = tmp_path / "x.zip"
    z.write_bytes(b"PK\x03\x04 truncated")
    samples, missing = expand_inputs([str(z)])
    rec = realjudge.load("cifake").predict_iter([(samples[0], samples[0].locator)])
    assert "corrupt archive" in next(rec).error and not missing
    good = tmp_path / "g.zip"
    with zipfile.ZipFile(good, "w") as zf:
        buf = io.BytesIO()
        Image.fromarray(make_images(1)[0][0]).save(buf, "PNG")
        zf.writestr("a.png", buf.getvalue())
    assert len(expand_inputs([str(good)])[0]) == 1
