"""`realjudge detect --engine ray` and `realjudge.ray.detect_dataset`: the local CLI's records, exactly.

On a local Ray instance (2 CPUs, no dashboard) started once for the module and shut down at its end,
over a small generated set: 32x32 and 128x128 PNGs and one corrupt file, in a folder and in a zip.
The option checks run without Ray; everything else is skipped when the `ray` extra is not installed
(`pip install 'realjudge[ray]'`).
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_images, save

from realjudge.cli import main


def detect(*args):
    """`realjudge detect ARGS` in this process: (exit code, stdout, stderr)."""
    res = CliRunner().invoke(main, ["detect", *args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, zip of the same files): 4 PNGs of 32x32, 4 of 128x128, one corrupt PNG."""
    root = tmp_path_factory.mktemp("rayset")
    folder = root / "images"
    for size, seed in ((32, 3), (128, 4)):
        reals, fakes = make_images(2, seed=seed, size=size)
        for i, (r, f) in enumerate(zip(reals, fakes)):
            save(r, folder / f"real_{size}_{i}.png")
            save(f, folder / "sub" / f"fake_{size}_{i}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    archive = root / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*.png")):
            z.write(p, f"set/{p.relative_to(folder)}")
    return folder, archive


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def jsonl_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def by_path(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["path"])


# ------------------------------------------------------------------------------------ without Ray
@pytest.mark.parametrize("args,says", [
    (["--engine", "ray"], "pass --out records.parquet or --out records.jsonl"),
    (["--engine", "ray", "--out", "records.csv"], "unknown output suffix '.csv'"),
    (["--engine", "ray", "--out", "records.jsonl", "--format", "json"], "--format is for --engine local"),
    (["--engine", "ray", "--out", "records.jsonl", "--workers", "2"], "--workers is for --engine local"),
    (["--out", "records.jsonl"], "--out is for --engine ray"),
    (["--ray-address", "127.0.0.1:6379"], "--ray-address is for --engine ray"),
])
def test_options_are_checked_first(image_set, tmp_path, args, says):
    code, out, err = detect(str(image_set[0]), *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("realjudge: error: ") and says in err, err
    assert not (tmp_path / "records.jsonl").exists()


def test_without_ray_the_error_names_the_extra(image_set, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = detect(str(image_set[0]), "--engine", "ray", "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and err.count("\n") == 1 and "pip install 'realjudge[ray]'" in err, err


def test_model_and_paths_are_checked_before_ray_starts(image_set, tmp_path):
    ray = pytest.importorskip("ray")
    was = ray.is_initialized()
    out = str(tmp_path / "r.jsonl")
    code, _, err = detect(str(image_set[0]), "--engine", "ray", "--out", out, "-m", "no-such-model")
    assert code == 2 and err.count("\n") == 1 and "unknown model 'no-such-model'" in err, err
    code, _, err = detect(str(tmp_path / "nowhere"), "--engine", "ray", "--out", out)
    assert code == 2 and err == f"realjudge: error: {tmp_path / 'nowhere'}: no such file or folder\n"
    assert ray.is_initialized() == was and not Path(out).exists()


def test_a_precision_this_cpu_lacks_is_refused_before_ray_starts(image_set, tmp_path, monkeypatch):
    """CPU actors: the driver's CPU answers for them, as `--engine local` refuses it."""
    import realjudge.precision

    ray = pytest.importorskip("ray")
    was = ray.is_initialized()
    monkeypatch.setattr(realjudge.precision, "native_bfloat16", lambda device: False)
    out = str(tmp_path / "r.jsonl")
    code, _, err = detect(str(image_set[0]), "--engine", "ray", "--out", out, "--precision", "bfloat16")
    assert code == 2 and err.count("\n") == 1 and "precision bfloat16: cpu here has no native bfloat16" in err, err
    assert ray.is_initialized() == was and not Path(out).exists()


def test_an_actor_that_cannot_start_is_one_line():
    """Ray's ActorDiedError text, colour codes and the constructor's traceback included: its last line."""
    from realjudge.cli.detect_ray import actor_reason

    text = ("The actor died because of an error raised in its creation task, \x1b[36mray::MapWorker()\x1b[39m "
            "(pid=1, ip=10.0.0.1)\n  File \"ray.py\", line 9, in __init__\n    raise UsageError(...)\n"
            "realjudge.errors.UsageError: precision bfloat16: cuda here has no native bfloat16; use float32\n\n")
    assert actor_reason(Exception(text)) == ("realjudge.errors.UsageError: precision bfloat16: cuda here has no "
                                             "native bfloat16; use float32")
    assert actor_reason(Exception("")) == "Exception"


# --------------------------------------------------------------------------------------- on Ray
@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory) -> Path:
    """The shipped cifake bundle copied to a local path: a path is shipped to the actors as bytes."""
    import realjudge

    shipped = Path(realjudge.__file__).parent / "shipped" / "cifake"
    return Path(shutil.copytree(shipped, tmp_path_factory.mktemp("bundle") / "my-bundle"))


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_cli_ray_records_are_the_local_records(ray_local, image_set, bundle_copy, tmp_path, suffix):
    """jsonl: the shipped detectors routed by size; parquet: one bundle given by its path, at another
    threshold (so the 128 px images carry the resize warning)."""
    folder, archive = image_set
    options = [] if suffix == "jsonl" else ["--model", str(bundle_copy), "-t", "0.4"]
    inputs = [str(folder), str(archive), *options]
    code, local_out, local_err = detect(*inputs, "--format", "jsonl", "--workers", "0", "--no-progress")
    local = jsonl_records(local_out)
    assert code == 1 and len(local) == 18  # (8 images + the corrupt one) x (folder, zip)
    assert sum(r["error"] is not None for r in local) == 2
    if suffix == "jsonl":
        assert {r["model"] for r in local} == {"cifake", "natural", None}
    else:
        assert sum(bool(r["warnings"]) for r in local) == 8 and {r["threshold"] for r in local} == {0.4, None}

    out = tmp_path / f"records.{suffix}"
    code, stdout, err = detect(*inputs, "--engine", "ray", "--out", str(out), "--no-progress")
    assert code == 1 and stdout == ""
    assert sorted(err.splitlines()) == sorted(local_err.splitlines())  # the same error and warning lines
    if suffix == "jsonl":
        assert out.read_text() == local_out  # byte for byte, in input order
        got = jsonl_records(out.read_text())
    else:
        import pyarrow.parquet as pq

        from realjudge.ray import COLUMNS, NESTED, record_dict

        table = pq.read_table(out)
        assert tuple(table.column_names) == COLUMNS
        rows = table.to_pylist()
        assert all(r[k] is None or isinstance(r[k], str) for r in rows for k in NESTED)  # JSON text columns
        got = [record_dict(r) for r in rows]
        assert got == local  # in input order too
    assert by_path(got) == by_path(local)
    assert not out.with_name(out.name + ".partial").exists()


def test_ray_runs_the_precision_asked_for(ray_local, image_set, tmp_path):
    """`--precision float32` reaches the actors: the records are the local float32 run's, and differ from
    the bundle's own bfloat16 step where this CPU has it (the shipped cifake is calibrated at bfloat16)."""
    import torch

    from realjudge.precision import native_bfloat16

    folder = image_set[0]
    common = [str(folder), "--model", "cifake", "--no-progress"]
    _, local, _ = detect(*common, "--format", "jsonl", "--workers", "0", "--precision", "float32")
    out = tmp_path / "r.jsonl"
    code, _, _ = detect(*common, "--engine", "ray", "--out", str(out), "--precision", "float32")
    assert code == 1 and out.read_text() == local
    if native_bfloat16(torch.device("cpu")):
        code, _, _ = detect(*common, "--engine", "ray", "--out", str(out))
        p32 = [r["p_fake"] for r in jsonl_records(local)]
        assert code == 1 and [r["p_fake"] for r in jsonl_records(out.read_text())] != p32


def test_detect_dataset_reads_what_ray_data_reads(ray_local, image_set):
    """Rows from ray.data.read_binary_files(include_paths=True) and a file:// URI read by `read_inputs`
    (named by the URI), in one Dataset, give the local records of the folder given twice.

    Twice, so that the forward passes hold the same images on both sides: the 18 rows reach one actor
    in one batch, as the 18 inputs make one local batch (float32 scores depend on a pass's size)."""
    import realjudge.ray as rj

    folder = image_set[0].resolve()
    uri_ds, missing = rj.read_inputs([f"file://{folder}"])
    assert missing == []
    ds = ray_local.data.read_binary_files(str(folder), include_paths=True).union(uri_ds)
    got = [rj.record_dict(r) for r in rj.detect_dataset(ds).take_all()]

    _, out, _ = detect(str(folder), str(folder), "--format", "jsonl", "--workers", "0", "--no-progress")
    local = jsonl_records(out)
    plain, again = local[:9], local[9:]
    as_uri = [r | {"path": f"file://{r['path']}",
                   "error": r["error"] and r["error"].replace(r["path"], f"file://{r['path']}", 1)} for r in again]
    assert len(got) == 18 and by_path(got) == by_path(plain + as_uri)


def test_the_module_does_not_shadow_the_ray_package(ray_local):
    import ray

    import realjudge
    import realjudge.ray as rj

    assert ray.__name__ == "ray" and rj.__name__ == "realjudge.ray" and ray is not rj
    assert realjudge.ray is rj and rj.require_ray() is ray and hasattr(ray, "init") and hasattr(ray.data, "Dataset")
