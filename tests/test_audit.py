"""`realjudge data audit`: finds a format shortcut, and --align removes it."""

import json
import subprocess
import sys

import numpy as np

from conftest import make_images, save


def _biased(root):
    # Both classes hold the same kind of content: only the file format differs.
    reals, _ = make_images(20, seed=4, size=64)
    fakes, _ = make_images(20, seed=5, size=64)
    rng = np.random.default_rng(0)
    for i, (r, f) in enumerate(zip(reals, fakes)):
        h, w = int(rng.integers(40, 64)), int(rng.integers(40, 64))
        save(r[:h, :w], root / "real" / f"r{i}.png")  # reals: PNG of varied size
        save(f, root / "fake" / f"f{i}.jpg", "JPEG")  # fakes: 64x64 JPEG
    return root


def test_audit_warns_and_align_fixes(tmp_path):
    from realjudge.data.audit import align, audit, format_report
    from realjudge.data.layouts import open_source

    root = _biased(tmp_path / "d")
    samples = open_source(str(root))
    res = audit(samples)
    assert res["classes"]["real"]["formats"] == {"PNG": 20} and res["classes"]["fake"]["formats"] == {"JPEG": 20}
    assert res["shortcut"]["warning"] and res["shortcut"]["best"] > 0.9
    assert "WARNING" in format_report(res)
    done = align(samples, tmp_path / "aligned", crop=32, quality=90)
    assert done["written"] == 40
    aligned = audit(open_source(str(tmp_path / "aligned"), "manifest"))
    # Format, size and quality no longer separate; bytes per pixel still may (it also measures the
    # content and the files' earlier compression, which a re-encode cannot erase).
    for fact in ("width", "height", "aspect", "jpeg_quality", "is_png", "chroma_full"):
        assert aligned["shortcut"]["per_feature"][fact] == 0.5
    assert aligned["classes"]["real"]["most_common_size"] == {"size": "32x32", "share": 1.0}


def test_cli_data_audit(tmp_path):
    root = _biased(tmp_path / "d")
    res = subprocess.run([sys.executable, "-m", "realjudge", "data", "audit", str(root), "--json", str(tmp_path / "a.json")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stdout
    assert json.loads((tmp_path / "a.json").read_text())["shortcut"]["warning"] is True


def test_cli_data_audit_names_unreadable_files_and_exits_1(tmp_path):
    root = _biased(tmp_path / "d")
    (root / "fake" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    res = subprocess.run([sys.executable, "-m", "realjudge", "data", "audit", str(root)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "1 file(s) could not be read:" in res.stdout and "broken.jpg" in res.stdout
    assert any(line.startswith("realjudge: error:") and "broken.jpg" in line for line in res.stderr.splitlines())
