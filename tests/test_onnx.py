"""ONNX export and the onnx runtime: `realjudge export BUNDLE --onnx`, `detect --runtime torch|onnx|auto`,
`realjudge.load(..., runtime=)`. The records of both runtimes agree within the export's tolerance."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import realjudge
from realjudge import onnx_bundle
from realjudge.errors import ExportError, UsageError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOL = onnx_bundle.TOLERANCE


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh REALJUDGE_CACHE for this test (on-the-fly exports land there)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("REALJUDGE_CACHE", str(root))
    return root


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    """A writable copy of the tiny bundle, so that exports into it leave the session's fixture alone."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "tiny"))


def run(*args):
    """The `realjudge` command in this process (the `cache` fixture's REALJUDGE_CACHE): .returncode,
    .stdout, .stderr."""
    from click.testing import CliRunner

    from realjudge.cli import main

    res = CliRunner().invoke(main, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    res.returncode = res.exit_code
    return res


def assert_same_records(torch_recs: list[dict], onnx_recs: list[dict], band=()) -> None:
    """Every field equal but the score; logit and p_fake within the tolerance; the same verdict unless
    p_fake sits at a decision edge (the threshold, or an edge of the uncertain `band`)."""
    assert len(torch_recs) == len(onnx_recs) > 0
    scores = ("p_fake", "logit", "verdict", "pixel_verdict")
    for a, b in zip(torch_recs, onnx_recs):
        assert {k: v for k, v in a.items() if k not in scores} == {k: v for k, v in b.items() if k not in scores}
        if a["p_fake"] is None:
            assert b["p_fake"] is None and a["verdict"] == b["verdict"]
            continue
        assert abs(a["logit"] - b["logit"]) <= TOL and abs(a["p_fake"] - b["p_fake"]) <= TOL
        if (a["verdict"], a["pixel_verdict"]) != (b["verdict"], b["pixel_verdict"]):
            assert min(abs(a["p_fake"] - e) for e in (a["threshold"], *band)) < 1e-3, (a, b)


def band_of(bundle) -> list[float]:
    return json.loads((Path(bundle) / "bundle.json").read_text())["uncertain_band"]


# ---------------------------------------------------------------------------------------- export
def test_export_writes_model_onnx_and_records_the_check(bundle, cache):
    import onnx
    import onnxruntime as ort

    path, entry = onnx_bundle.export_bundle(bundle)
    assert path == bundle / "model.onnx" and not cache.exists()  # a user's folder: written in place
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["onnx"] == entry
    assert entry["sha256"] == onnx_bundle._sha256(path.read_bytes())
    assert entry["weights_sha256"] == onnx_bundle._sha256((bundle / "model.safetensors").read_bytes())
    assert entry["opset"] == onnx_bundle.OPSET
    check = entry["check"]
    assert check["passed"] and check["max_abs_logit_diff"] <= check["tolerance"] == TOL
    assert check["batch_sizes"][:2] == [1, 7] and sum(check["batch_sizes"]) == check["views"]
    onnx.checker.check_model(onnx.load(str(path)))
    # the graph: normalised NCHW float input, dynamic batch, one logit per view
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape[1:] == [3, 32, 32] and isinstance(inp.shape[0], str) and out.shape == [inp.shape[0]]
    for n in (1, 5):
        assert sess.run(None, {inp.name: np.zeros((n, 3, 32, 32), np.float32)})[0].shape == (n,)


def test_cli_export_out_copies_the_bundle_and_checks_on_images(bundle, tmp_path, cache):
    before = (bundle / "bundle.json").read_bytes()
    out = tmp_path / "exported"
    res = run("export", str(bundle), "--onnx", "--out", str(out), "--check-on", str(EXAMPLES))
    assert res.returncode == 0, res.stderr
    assert f"wrote {out / 'model.onnx'}" in res.stdout and "passed" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "bundle.json", "model.onnx", "model.safetensors"]
    assert (bundle / "bundle.json").read_bytes() == before and not (bundle / "model.onnx").exists()
    check = json.loads((out / "bundle.json").read_text())["onnx"]["check"]
    n_images = len(list(EXAMPLES.glob("*.jpg")))
    assert check["views"] == 48 + n_images  # generated views + one view per example image (tiny: no TTA)
    assert run("export", str(bundle)).returncode == 2  # no format chosen: usage error
    res = run("models", str(out))
    assert res.returncode == 0 and f"onnx: {out / 'model.onnx'} (opset 17" in res.stdout


def test_a_failed_check_writes_nothing_and_exits_3(bundle, cache, monkeypatch):
    import torch

    real_export = onnx_bundle._export_graph

    class Shifted(torch.nn.Module):  # a wrong graph: every logit off by 0.01
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) + 0.01

    monkeypatch.setattr(onnx_bundle, "_export_graph", lambda model, *a: real_export(Shifted(model), *a))
    before = sorted(p.name for p in bundle.iterdir()), (bundle / "bundle.json").read_bytes()
    with pytest.raises(ExportError, match=r"disagrees with torch: largest \|logit difference\| 0\.01.*nothing was written"):
        onnx_bundle.export_bundle(bundle)
    res = run("export", str(bundle), "--onnx")
    assert res.returncode == 3 and res.stdout == "" and "disagrees with torch" in res.stderr
    assert res.stderr.startswith("realjudge: error: ") and len(res.stderr.splitlines()) == 1
    assert (sorted(p.name for p in bundle.iterdir()), (bundle / "bundle.json").read_bytes()) == before
    # the same graph passes a tolerance that allows it
    _path, entry = onnx_bundle.export_bundle(bundle, tolerance=0.02)
    assert 0.009 < entry["check"]["max_abs_logit_diff"] < 0.011


# ---------------------------------------------------------------------------------------- runtimes
def test_detect_runtime_onnx_gives_the_torch_records(bundle, tiny_flat, cache):
    assert run("export", str(bundle), "--onnx").returncode == 0
    args = ["detect", str(tiny_flat), "--model", str(bundle), "--format", "jsonl", "--workers", "0"]
    default, torch_, onnx_ = (run(*args, *extra) for extra in ([], ["--runtime", "torch"],
                                                                              ["--runtime", "onnx"]))
    assert default.returncode == torch_.returncode == onnx_.returncode == 0, onnx_.stderr
    assert default.stdout == torch_.stdout  # the default is torch, byte for byte
    assert onnx_.stderr == torch_.stderr == ""
    assert_same_records([json.loads(line) for line in torch_.stdout.splitlines()],
                        [json.loads(line) for line in onnx_.stdout.splitlines()], band_of(bundle))


def test_api_runtimes_and_auto_says_which(bundle, tiny_flat, cache):
    paths = sorted(str(p) for p in (tiny_flat / "fake").iterdir())[:8] + sorted(
        str(p) for p in (tiny_flat / "real").iterdir())[:8]
    t = realjudge.load(str(bundle), device="cpu")
    o = realjudge.load(str(bundle), runtime="onnx")
    assert t.runtime == "torch" and o.runtime == "onnx" and "runtime='onnx'" in repr(o)
    assert o.onnx.where == "cache" and not (bundle / "model.onnx").exists()  # no model.onnx: exported into the cache
    assert o.with_threshold(0.3).runtime == "onnx"
    assert_same_records([r.to_dict() for r in t.predict(paths)], [r.to_dict() for r in o.predict(paths)], band_of(bundle))
    recs = realjudge.detect(paths[:2], model=str(bundle), runtime="onnx")
    assert [r.model for r in recs] == ["tiny", "tiny"]
    # decoding processes receive the router: the ONNX Runtime session pickles (as its graph) and reopens
    clone = pickle.loads(pickle.dumps(o))
    assert clone.onnx.session is None and np.array_equal(clone.logits(np.zeros((2, 32, 32, 3), np.uint8)),
                                                         o.logits(np.zeros((2, 32, 32, 3), np.uint8)))
    assert [r.p_fake for r in o.predict_iter(((p, p) for p in paths), workers=2)] == [r.p_fake for r in o.predict(paths)]

    a = realjudge.load(str(bundle), runtime="auto")
    assert a.runtime in ("torch", "onnx")
    assert a.runtime_note.startswith(f"runtime auto chose {a.runtime}: ") and " ms against " in a.runtime_note
    res = run("detect", paths[0], "--model", str(bundle), "--runtime", "auto")
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("realjudge: note: tiny: runtime auto chose ") and len(res.stderr.splitlines()) == 1


def test_cache_zip_and_stale_model_onnx(bundle, tmp_path, cache):
    first, why = onnx_bundle.find_onnx(bundle)
    assert first is None and "no model.onnx" in why
    det = realjudge.load(str(bundle), runtime="onnx")
    (folder,) = (cache / "onnx").iterdir()
    assert det.onnx.location == str(folder / "model.onnx") and (folder / "onnx.json").is_file()
    again, where = onnx_bundle.find_onnx(bundle)
    assert where == "cache" and again.data == (folder / "model.onnx").read_bytes()  # found, not exported again

    onnx_bundle.export_bundle(bundle)  # in place: the bundle's own file now comes first
    assert onnx_bundle.find_onnx(bundle)[1] == "bundle"
    zipped = tmp_path / "tiny.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for f in bundle.iterdir():
            z.write(f, f.name)
    assert realjudge.load(str(zipped), runtime="onnx").onnx.where == "bundle"

    # a bundle rewritten since the export (new weights, old model.onnx): the file is stale and ignored
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["onnx"]["weights_sha256"] = "0" * 64
    (bundle / "bundle.json").write_text(json.dumps(meta))
    shutil.rmtree(cache)
    found, why = onnx_bundle.find_onnx(bundle)
    assert found is None and "stale" in why
    assert "stale" in run("models", str(bundle)).stdout


def test_usage_errors(bundle, cache, monkeypatch):
    with pytest.raises(UsageError, match="runtime must be one of torch, onnx, auto"):
        realjudge.load(str(bundle), runtime="tensorrt")
    with pytest.raises(UsageError, match="runtime onnx runs on the CPU"):
        realjudge.load(str(bundle), device="cuda", runtime="onnx")
    res = run("detect", str(EXAMPLES), "--model", str(bundle), "--runtime", "tensorrt")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    with pytest.raises(UsageError, match="tolerance"):
        onnx_bundle.export_bundle(bundle, tolerance=-1)


def test_missing_onnxruntime_and_onnx_name_the_extra(bundle, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(UsageError, match=r"needs onnxruntime, which is not installed: pip install 'realjudge\[onnx\]'"):
        realjudge.load(str(bundle), runtime="onnx")
    res = run("detect", str(EXAMPLES), "--model", str(bundle), "--runtime", "onnx")
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1 and "realjudge[onnx]" in res.stderr
    det = realjudge.load(str(bundle), runtime="auto")  # auto: torch, and why
    assert det.runtime == "torch" and "onnxruntime" in det.runtime_note
    assert "onnxruntime is not installed: pip install 'realjudge[onnx]'" in run("models", str(bundle)).stdout
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(UsageError, match=r"needs the onnx package.*realjudge\[onnx\]"):
        onnx_bundle.export_bundle(bundle)


# ---------------------------------------------------------------------------------------- shipped
def test_shipped_natural_exports_into_the_cache_and_scores_the_same(cache):
    """The shipped natural detector (NTF over EfficientNet-Lite0, with the fused trace score): the
    package folder is left as installed, the export goes to the cache, the records agree."""
    shipped = onnx_bundle.SHIPPED_DIR / "natural"
    before = sorted(p.name for p in shipped.iterdir())
    path, entry = onnx_bundle.export_bundle("natural", images=[EXAMPLES])
    assert path.parent.parent == cache / "onnx" and sorted(p.name for p in shipped.iterdir()) == before
    assert entry["check"]["passed"] and entry["check"]["max_abs_logit_diff"] <= TOL
    paths = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
    t = realjudge.load("natural", device="cpu").predict(paths)
    o = realjudge.load("natural", runtime="onnx")
    assert o.onnx.where == "cache"
    assert_same_records([r.to_dict() for r in t], [r.to_dict() for r in o.predict(paths)], band_of(shipped))


def test_the_service_scores_on_onnx_like_torch(bundle, tiny_flat, cache):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from realjudge.serve.app import create_app
    from realjudge.serve.scoring import load_models

    image = next((tiny_flat / "fake").glob("*.png"))
    answers = {}
    for runtime in ("torch", "onnx"):
        router = load_models([str(bundle)], "cpu", None, runtime)
        assert all(d.runtime == runtime for d in router.detectors.values())
        with TestClient(create_app(router)) as client:
            r = client.post("/v1/detect", files={"file": (image.name, image.read_bytes(), "image/png")})
            assert r.status_code == 200
            answers[runtime] = r.json()["results"][0]
    assert answers["onnx"]["verdict"] == answers["torch"]["verdict"]
    assert abs(answers["onnx"]["p_fake"] - answers["torch"]["p_fake"]) < 1e-4
