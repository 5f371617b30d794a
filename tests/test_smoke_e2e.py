import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "realjudge", *args], capture_output=True, text=True)


def test_detect_bad_folder_reports_every_file(tiny_bundle, bad_folder):
    res = run("detect", str(bad_folder), "--model", str(tiny_bundle), "--format", "jsonl")
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert len(by_name) == 11
    for ok in ("good1.png", "good2.jpg", "cmyk.jpg", "grey16.png", "palette.png", "grey_alpha.png", "animated.gif"):
        assert by_name[ok]["error"] is None, by_name[ok]
        assert by_name[ok]["verdict"] in ("real", "fake", "uncertain")
    for bad in ("empty.jpg", "text.jpg", "truncated.jpg", "bomb.png"):
        assert by_name[bad]["p_fake"] is None and by_name[bad]["error"], by_name[bad]
        assert "\n" not in by_name[bad]["error"]
