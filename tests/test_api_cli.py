"""The main job: `realjudge detect` and `realjudge.load(...).predict(...)`, with every exit code."""

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import realjudge
from conftest import make_images
from realjudge.errors import UsageError


def run(*args):
    return subprocess.run([sys.executable, "-m", "realjudge", *args], capture_output=True, text=True, timeout=300)


def test_tiny_bundle_learnt_something(tiny_bundle):
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    assert meta["val_metrics"]["roc_auc"] > 0.8
    assert (tiny_bundle / "MODEL_CARD.md").read_text().startswith("# tiny")


def test_predict_accepts_every_input_type(tiny_bundle, tiny_flat):
    det = realjudge.load(str(tiny_bundle))
    path = next((tiny_flat / "fake").iterdir())
    arr = np.asarray(Image.open(path).convert("RGB"))
    recs = det.predict([str(path), path.read_bytes(), Image.open(path), arr])
    assert len({round(r.p_fake, 6) for r in recs}) == 1
    assert all(r.model == "tiny" and r.verdict in ("real", "fake", "uncertain") for r in recs)
    single = det.predict(path)
    assert single.path == str(path) and single.threshold == det.threshold
    bad = det.predict(b"nope")
    assert bad.p_fake is None and "not an image" in bad.error
    with pytest.raises(UsageError):
        det.predict([arr], threshold=2.0)


def test_threshold_override(tiny_bundle, tiny_flat):
    det = realjudge.load(str(tiny_bundle), threshold=0.0)
    assert all(r.verdict == "fake" for r in det.predict(sorted((tiny_flat / "real").iterdir())[:3]))


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_detect_formats(tiny_bundle, tiny_flat, fmt):
    res = run("detect", str(tiny_flat / "real"), "--model", str(tiny_bundle), "--format", fmt, "--workers", "0")
    assert res.returncode == 0, res.stderr
    if fmt == "json":
        rows = json.loads(res.stdout)
    elif fmt == "jsonl":
        rows = [json.loads(x) for x in res.stdout.splitlines()]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
    else:
        header, *rows = res.stdout.splitlines()
        assert header.split()[:2] == ["verdict", "p_fake"]
    assert len(rows) == 48


def test_detect_parallel_matches_serial(tiny_bundle, tiny_flat):
    a = run("detect", str(tiny_flat), "--model", str(tiny_bundle), "--format", "jsonl", "--workers", "0")
    b = run("detect", str(tiny_flat), "--model", str(tiny_bundle), "--format", "jsonl", "--workers", "2",
            "--batch-size", "7")
    assert a.returncode == b.returncode == 0
    ra = [json.loads(x) for x in a.stdout.splitlines()]
    rb = [json.loads(x) for x in b.stdout.splitlines()]
    assert [r["path"] for r in ra] == [r["path"] for r in rb] and len(ra) == 96
    assert np.allclose([r["p_fake"] for r in ra], [r["p_fake"] for r in rb], atol=1e-5)


def test_usage_errors_exit_2(tiny_bundle, tmp_path):
    res = run("detect", str(tmp_path / "missing.png"), "--model", str(tiny_bundle))
    assert res.returncode == 2 and "missing.png: no such file" in res.stderr
    img = tmp_path / "a.png"
    Image.fromarray(make_images(1)[0][0]).save(img)
    res = run("detect", str(img), "--model", "no-such-model")
    assert res.returncode == 2 and "unknown model 'no-such-model'" in res.stderr and "Traceback" not in res.stderr
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    res = run("detect", str(img), "--model", str(broken))
    assert res.returncode == 2 and "corrupt bundle" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    (broken / "bundle.json").write_text("{")
    res = run("detect", str(img), "--model", str(broken))
    assert res.returncode == 2 and "corrupt bundle" in res.stderr
    res = run("detect", "--format", "xml", str(img))
    assert res.returncode == 2


def test_missing_and_present_paths_exit_1(tiny_bundle, tiny_flat, tmp_path):
    one = next((tiny_flat / "real").iterdir())
    res = run("detect", str(one), str(tmp_path / "gone.png"), "--model", str(tiny_bundle), "--format", "jsonl")
    assert res.returncode == 1 and len(res.stdout.splitlines()) == 1


def test_zipped_bundle_loads(tiny_bundle, tmp_path):
    from realjudge.bundle import zip_bundle

    z = zip_bundle(tiny_bundle, tmp_path / "tiny.zip")
    assert realjudge.load(str(z)).name == "tiny"


def test_evaluate_writes_report(tiny_bundle, tiny_flat, tmp_path):
    res = run("evaluate", str(tiny_flat), "--model", str(tiny_bundle), "--out", str(tmp_path / "rep"),
              "--perturb", "jpeg:75", "--perturb", "downscale:0.5")
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["overall"]["n"] == 96 and set(m["perturbations"]) == {"jpeg:75", "downscale:0.5"}
    for f in ("report.md", "roc.png", "pr.png", "confusion.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0


def test_models_lists_architectures():
    res = run("models", "--json")
    assert res.returncode == 0
    names = {a["name"] for a in json.loads(res.stdout)["architectures"]}
    assert {"cifake-cnn", "resnet"} <= names


def test_progress_bar_stays_off_stdout(tiny_bundle, tiny_flat):
    res = run("detect", str(tiny_flat), "--model", str(tiny_bundle), "--format", "jsonl", "--progress")
    assert res.returncode == 0
    assert len([json.loads(x) for x in res.stdout.splitlines()]) == 96
    assert "detect" in res.stderr  # the bar went to stderr


def test_router_picks_detector_by_size_and_names_it(tiny_bundle):
    from realjudge.detector import load
    from realjudge.router import Router

    small, large = load(str(tiny_bundle)), load(str(tiny_bundle))
    large.info.name = "big"
    router = Router({"tiny": small, "big": large}, "tiny", "big")
    a, b = make_images(1, 3, 32)[0][0], make_images(1, 3, 200)[0][0]
    recs = list(router.predict_iter([(a, "a"), (b, "b"), (b"junk", "c"), (a, "d")], batch_size=2))
    assert [r.model for r in recs] == ["tiny", "big", None, "tiny"]  # an unreadable input names no model
    assert recs[2].error and recs[1].preprocess.startswith("resized 200x200->32x32")


def test_mirror_policy_scores_both_views_and_matches_the_mean(tiny_bundle, tiny_flat):
    from dataclasses import replace

    det = realjudge.load(str(tiny_bundle))
    img = np.asarray(Image.open(next((tiny_flat / "fake").iterdir())).convert("RGB"))
    plain = det.predict(img).logit
    flipped = det.predict(np.ascontiguousarray(img[:, ::-1])).logit
    det.policy = replace(det.policy, mirror=True)
    rec = det.predict(img)
    assert rec.logit == pytest.approx((plain + flipped) / 2, abs=1e-5)
    assert "mirrored" in rec.preprocess
