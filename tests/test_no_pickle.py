"""No pickle anywhere a user loads: bundles, checkpoints, caches, search stores, score files.

A static scan of every load call in the package, and loads of hostile files whose pickle payload
would leave a marker behind if it ever ran."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "realjudge"
# The one reader of pickles: CIFAR-10's own batches (Python 2 pickles), read by an unpickler that
# resolves only numpy's array reconstruction (tests/test_generate_cifar.py proves it refuses the rest).
RESTRICTED_UNPICKLERS = {"generate/cifar.py"}


def _calls(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return ast.unparse(k.value)
    return None


def test_every_load_call_refuses_pickles():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for call, func in _calls(path):
            where = f"{rel}:{call.lineno} {func}"
            if func.endswith("torch.load"):
                if _kw(call, "weights_only") != "True":
                    problems.append(f"{where} without weights_only=True")
            elif func in ("np.load", "numpy.load"):
                if _kw(call, "allow_pickle") != "False":
                    problems.append(f"{where} without allow_pickle=False")
            elif func in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "joblib.load",
                          "dill.load", "dill.loads", "shelve.open", "marshal.load", "marshal.loads", "torch.jit.load",
                          "pd.read_pickle", "pandas.read_pickle"):
                problems.append(f"{where}: unpickles")
            elif func.endswith("torch.serialization.load"):
                problems.append(f"{where}: unpickles")
        if rel not in RESTRICTED_UNPICKLERS:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
                    problems.append(f"{rel}:{node.lineno} defines an Unpickler")
    assert problems == []


def test_the_restricted_unpickler_resolves_only_what_it_names():
    text = (PACKAGE / "generate" / "cifar.py").read_text()
    tree = ast.parse(text)
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in n.bases)]
    assert classes and all(any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in c.body) for c in classes)


def test_the_scan_catches_an_unsafe_load(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, numpy as np, pickle\ntorch.load('x')\nnp.load('y')\npickle.loads(b'')\n")
    found = [f for _, f in _calls(bad)]
    assert found.count("torch.load") == 1 and "np.load" in found and "pickle.loads" in found


class _Payload:
    """Unpickling this touches a marker file: proof that a loader ran a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _hostile(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Payload(marker)))


def test_a_pickle_in_place_of_bundle_weights_is_refused_without_running(tiny_bundle, tmp_path):
    import shutil

    from realjudge.detector import load
    from realjudge.errors import UsageError

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    marker = tmp_path / "ran"
    _hostile(bundle / "model.safetensors", marker)
    with pytest.raises(UsageError):
        load(str(bundle), "cpu")
    assert not marker.exists()


def test_a_pickle_in_place_of_a_checkpoint_is_refused_without_running(tiny_flat, tmp_path):
    from realjudge.train.config import TrainConfig
    from realjudge.train.engine import Trainer

    cfg = TrainConfig.from_json({"arch": "cifake-cnn", "sources": [{"path": str(tiny_flat)}], "epochs": 2,
                                 "batch_size": 16, "threads": 1, "seed": 0})
    run = tmp_path / "run"
    Trainer(cfg, run, progress=False).fit()
    marker = tmp_path / "ran"
    _hostile(run / "checkpoint.safetensors", marker)
    from realjudge.errors import UsageError

    with pytest.raises(UsageError, match="not a readable realjudge checkpoint"):
        Trainer(cfg, run, progress=False).fit(resume=True)
    assert not marker.exists()


def test_a_pickled_cache_array_is_refused_without_running(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    path = tmp_path / "pixels.npy"
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(ValueError):
        np.load(path, allow_pickle=False, mmap_mode="r")  # exactly how realjudge.data.cache reads its arrays
    assert not marker.exists()


def test_score_files_and_search_stores_are_not_pickles(tmp_path):
    from realjudge.errors import UsageError
    from realjudge.search.store import ResultStore

    marker = tmp_path / "ran"
    _hostile(tmp_path / "results.json", marker)
    with pytest.raises(UsageError, match="not a realjudge search store"):
        ResultStore(tmp_path, {})
    assert not marker.exists()
