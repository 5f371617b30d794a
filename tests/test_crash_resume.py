"""Crash and resume: a training run killed with SIGKILL mid-epoch, or during a checkpoint save, resumes
from its last good checkpoint and ends bit-identical (CPU, one thread) to a run that was never killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from realjudge.train.config import load_config
from realjudge.train.engine import Trainer

EPOCHS = 4  # the in-process runs: batches of 8, a tenth of a second an epoch
KILLED_EPOCHS = 3  # the subprocess: batches of 2, about 0.4 s an epoch on one core


class _Killed(BaseException):
    """Stands for a kill: a BaseException, so nothing in the engine catches it."""


def _same_tensors(a: dict, b: dict) -> list[str]:
    """Names of the tensors that differ (bit for bit) or are missing on one side."""
    return sorted(set(a) ^ set(b)) + [k for k in a if k in b and not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]


def _metrics(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history]


def _assert_same_run(run: Path, ref: Path) -> None:
    """Best weights, last weights + optimizer state, and every per-epoch metric, exactly."""
    assert not _same_tensors(load_file(run / "best.safetensors"), load_file(ref / "best.safetensors"))
    assert not _same_tensors(load_file(run / "checkpoint.safetensors"), load_file(ref / "checkpoint.safetensors"))
    assert _metrics(json.loads((run / "history.json").read_text())) == _metrics(json.loads((ref / "history.json").read_text()))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """real/ + fake/, 96 32x32 PNGs each (72 + 72 for training)."""
    from conftest import write_flat

    return write_flat(tmp_path_factory.mktemp("crashdata"), 96, seed=4)


def _read_bars(stream, bars: list) -> None:
    """Collect (epoch, percent) from tqdm's progress bars ("epoch 2/3:  40%|...", redrawn after \\r)."""
    buf = b""
    for chunk in iter(lambda: stream.read1(4096), b""):
        buf += chunk
        *lines, buf = re.split(rb"[\r\n]", buf)
        for line in lines:
            m = re.search(rb"epoch (\d+)/\d+:\s+(\d+)%", line)
            if m:
                bars.append((int(m[1]), int(m[2])))


def _write_config(path: Path, data: Path, **kw) -> Path:
    path.write_text(json.dumps({"arch": "cifake-cnn", "arch_kwargs": {"n_conv": 2, "filters": 16, "units": 32},
                                "sources": [{"path": str(data)}], "val_fraction": 0.25, "threads": 1,
                                "device": "cpu", "seed": 3} | kw))
    return path


@pytest.fixture(scope="module")
def config(data, tmp_path_factory) -> Path:
    return _write_config(tmp_path_factory.mktemp("crash") / "config.json", data, epochs=EPOCHS, batch_size=8)


@pytest.fixture(autouse=True)
def _cache(data, monkeypatch):
    monkeypatch.setenv("REALJUDGE_CACHE", str(data.parent / "crash-cache"))


def _uninterrupted(config: Path, run: Path) -> Trainer:
    trainer = Trainer(load_config(str(config)), run, progress=False)
    trainer.fit_history = trainer.fit()["history"]
    return trainer


@pytest.fixture(scope="module")
def reference(config, data) -> Trainer:
    """The uninterrupted run, same config and seed."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("REALJUDGE_CACHE", str(data.parent / "crash-cache"))
        return _uninterrupted(config, config.parent / "ref")


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(data, tmp_path):
    from click.testing import CliRunner

    from realjudge.cli import main

    config = _write_config(tmp_path / "config.json", data, epochs=KILLED_EPOCHS, batch_size=2)
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--run-dir", str(run), "--name", "crash"]
    env = {"REALJUDGE_CACHE": os.environ["REALJUDGE_CACHE"], "PATH": "", "OMP_NUM_THREADS": "1"}
    # --progress: the run's own progress bars (stderr) say how far into an epoch it is.
    proc = subprocess.Popen([sys.executable, "-m", "realjudge", *args, "--progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bars: list[tuple[int, int]] = []  # (epoch, percent done), in the order the bars were drawn
    reader = threading.Thread(target=_read_bars, args=(proc.stderr, bars), daemon=True)
    reader.start()
    meta_path = run / "checkpoint.json"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint and partial epoch within 120 s"
            if meta_path.exists():
                last = json.loads(meta_path.read_text())["epoch"]
                # A fraction of the next epoch is done (its bar shows some steps, well short of all): kill.
                mid = [(e, pct) for e, pct in bars if e > last and 0 < pct <= 60]
                if mid:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.005)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed = json.loads(meta_path.read_text())
    done = killed["epoch"]  # the last completed (checkpointed) epoch
    in_progress = mid[-1][0]
    # Killed inside the epoch after the last checkpoint: that partial epoch is all that is lost.
    assert 1 <= done < KILLED_EPOCHS and in_progress == done + 1
    assert not (run / "bundle").exists()

    ref = _uninterrupted(config, tmp_path / "ref")
    # `train --resume` to the end (in this process: a second interpreter would only add its start-up).
    res = CliRunner().invoke(main, [*args, "--resume", "--progress"])
    assert res.exit_code == 0, res.output
    # The resumed run trains exactly the epochs after the last checkpoint: only the killed, partial
    # epoch is lost, and the checkpointed ones are kept as they were (their timings included).
    trained = [int(line.split()[1].rstrip(":")) for line in res.stdout.splitlines() if line.startswith("epoch ")]
    assert trained == list(range(done + 1, KILLED_EPOCHS + 1))
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, KILLED_EPOCHS + 1))
    assert history[:done] == killed["history"]
    # Bit-identical to the uninterrupted run with the same seed (CPU, one thread), across processes.
    _assert_same_run(run, ref.run_dir)
    bundle = load_file(run / "bundle" / "model.safetensors")
    assert not _same_tensors(bundle, {k: v.contiguous() for k, v in ref.model.state_dict().items()})
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    assert meta["name"] == "crash" and len(meta["training"]["history"]) == KILLED_EPOCHS


def _fit_killed(config: Path, run: Path, target: str, attr: str, when) -> None:
    """Fit with `target.attr(path, data)` wrapped: `when(path, data)` says whether the kill comes
    "before" or "after" the real call (or None: no kill)."""
    import importlib

    module = importlib.import_module(target)
    real = getattr(module, attr)

    def wrapped(path, data, *a, **kw):
        stage = when(Path(path), data)
        if stage == "before":
            raise _Killed
        out = real(path, data, *a, **kw)
        if stage == "after":
            raise _Killed
        return out

    with pytest.MonkeyPatch.context() as m:
        m.setattr(module, attr, wrapped)
        with pytest.raises(_Killed):
            Trainer(load_config(str(config)), run, progress=False).fit()


def _epoch_of(data) -> int | None:
    return json.loads(data)["epoch"] if isinstance(data, bytes) else None


def _resume(config: Path, run: Path) -> dict:
    out = Trainer(load_config(str(config)), run, progress=False).fit(resume=True)
    assert [h["epoch"] for h in out["history"]] == list(range(1, EPOCHS + 1))
    return out


def test_a_torn_write_of_the_weights_leaves_the_last_checkpoint_usable(config, reference, tmp_path):
    # Killed while writing epoch 2's weights: a partial checkpoint.safetensors.tmp lies next to the
    # epoch-1 checkpoint, which the write-then-rename left whole.
    run = tmp_path / "run"
    saves = []

    def torn(path: Path, data):
        if path.name == "checkpoint.safetensors":
            saves.append(1)
            if len(saves) == 2:
                path.with_name(path.name + ".tmp").write_bytes(data[:100])
                return "before"
        return None

    _fit_killed(config, run, "realjudge.train.checkpoint", "atomic_write", torn)
    assert (run / "checkpoint.safetensors.tmp").stat().st_size == 100
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 1
    assert any(k.startswith("model.") for k in load_file(run / "checkpoint.safetensors"))  # still whole
    _resume(config, run)
    assert not (run / "checkpoint.safetensors.tmp").exists()  # the next save overwrote and renamed it
    _assert_same_run(run, reference.run_dir)


def test_a_kill_between_the_weights_and_checkpoint_json_loses_nothing(config, reference, tmp_path):
    # Epoch 2's weights are written, checkpoint.json still says epoch 1. The weights carry their own
    # record, so the resumed run continues after epoch 2 (it would otherwise train epoch 2 a second
    # time, on top of weights that already had it).
    run = tmp_path / "run"
    unwritten = []

    def kill(path: Path, data):
        if path.name == "checkpoint.json" and _epoch_of(data) == 2:
            unwritten.append(json.loads(data))
            return "before"
        return None

    _fit_killed(config, run, "realjudge.train.engine", "atomic_write", kill)
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 1
    out = _resume(config, run)
    assert out["history"][:2] == unwritten[0]["history"]  # epochs 1 and 2 kept as trained, not run again
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == EPOCHS
    _assert_same_run(run, reference.run_dir)


def test_partial_temp_files_and_a_torn_history_are_ignored_on_resume(config, reference, tmp_path):
    # Killed right after the last epoch's checkpoint, while history.json was being written, with the
    # partial temp files of an earlier torn save lying around.
    run = tmp_path / "run"
    _fit_killed(config, run, "realjudge.train.engine", "atomic_write",
                lambda p, d: "after" if p.name == "checkpoint.json" and _epoch_of(d) == EPOCHS else None)
    (run / "checkpoint.safetensors.tmp").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    (run / "checkpoint.json.tmp").write_text('{"epoch": 3, "best_')
    (run / "history.json").write_text('[{"epoch": 1, "tra')
    trainer = Trainer(load_config(str(config)), run, progress=False)
    out = trainer.fit(resume=True)
    assert [h["epoch"] for h in out["history"]] == list(range(1, EPOCHS + 1))
    _assert_same_run(run, reference.run_dir)  # history.json rewritten whole from the checkpoint
    bundle = trainer.export(tmp_path / "bundle", "after-crash")
    assert len(json.loads((bundle / "bundle.json").read_text())["training"]["history"]) == EPOCHS
