"""Grouped splits: near-duplicates (one prompt rendered by several generators) never straddle a split."""

import csv

import numpy as np
import pytest

from conftest import make_images, save


@pytest.fixture(scope="module")
def prompt_manifest(tmp_path_factory):
    """12 prompts, each rendered by three generators (prompts/<k>/<gen>.png), plus 24 reals."""
    root = tmp_path_factory.mktemp("prompts")
    reals, fakes = make_images(36, seed=5)
    rows = []
    for i, r in enumerate(reals[:24]):
        save(r, root / "real" / f"r{i}.png")
        rows.append([f"real/r{i}.png", "real", "photo"])
    for i, f in enumerate(fakes):
        k, gen = i // 3, ["gA", "gB", "gC"][i % 3]
        save(f, root / "prompts" / str(k) / f"{gen}.png")
        rows.append([f"prompts/{k}/{gen}.png", "fake", gen])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "generator"])
        w.writerows(rows)
    return root


PATTERN = r"prompts/(\d+)/"


def grouped(root):
    from realjudge.data.samples import assign_groups
    from realjudge.data.layouts import open_source

    samples = open_source(str(root))
    assign_groups(samples, PATTERN)
    return samples


def test_assign_groups_by_capture_and_split_key(prompt_manifest):
    from realjudge.data.samples import split_key

    samples = grouped(prompt_manifest)
    fakes = [s for s in samples if s.label == 1]
    assert {s.group for s in fakes} == {str(k) for k in range(12)}
    assert all(s.group is None for s in samples if s.label == 0)  # no match: split by its own bytes
    by_group = {}
    for s in fakes:
        by_group.setdefault(s.group, set()).add(split_key(s))
    assert all(len(keys) == 1 for keys in by_group.values())
    assert len({next(iter(k)) for k in by_group.values()}) == 12
    real = next(s for s in samples if s.label == 0)
    assert split_key(real) == real.id


def test_manifest_group_column(tmp_path):
    from realjudge.data.layouts import open_source

    reals, _ = make_images(2, seed=1)
    for i, r in enumerate(reals):
        save(r, tmp_path / f"a{i}.png")
    (tmp_path / "manifest.csv").write_text("path,label,group\na0.png,real,p1\na1.png,real,\n")
    samples = sorted(open_source(str(tmp_path)), key=lambda s: s.locator)
    assert [s.group for s in samples] == ["p1", None]
    assert "group" not in samples[0].meta


def test_bad_group_pattern_is_one_line_error(tmp_path):
    from realjudge.errors import SourceError, UsageError
    from realjudge.data.samples import assign_groups
    from realjudge.train.config import TrainConfig

    with pytest.raises(UsageError, match=r"config: data/: group pattern '\(unclosed' is not a regular expression"):
        TrainConfig(sources=[{"path": "data/", "group": "(unclosed"}])
    with pytest.raises(SourceError, match="not a regular expression"):
        assign_groups([], "[")
    with pytest.raises(UsageError, match="a source is an object with keys"):
        TrainConfig(sources=[{"path": "data/", "groups": "x"}])


def test_validation_split_keeps_each_group_on_one_side(prompt_manifest):
    from realjudge.data.cache import ArraySet
    from realjudge.train.batches import split_arrays

    samples = grouped(prompt_manifest)
    n = len(samples)
    data = ArraySet(np.zeros((n, 2, 2, 3), np.uint8), np.array([s.label for s in samples]), [s.id for s in samples],
                    samples, [])
    split = split_arrays(data, 0.3, None, 0)
    train_groups = {s.group for s in split.train.samples if s.group}
    val_groups = {s.group for s in split.val.samples if s.group}
    assert train_groups and val_groups and not train_groups & val_groups


def test_grouped_leave_one_generator_out_never_tests_a_trained_prompt(prompt_manifest):
    from realjudge.evaluate.protocols import leave_one_generator_out

    protos = leave_one_generator_out(grouped(prompt_manifest), 0.4)
    for p in protos:
        g = p.meta["held_out"]
        test_fakes = [s for s in p.test if s.label == 1]
        train_fakes = [s for s in p.train if s.label == 1]
        assert test_fakes and train_fakes
        assert {s.generator for s in test_fakes} == {g} and g not in {s.generator for s in train_fakes}
        assert not {s.group for s in test_fakes} & {s.group for s in train_fakes}
    # Ungrouped, every fake of the held-out generator is tested, as before.
    from realjudge.data.layouts import open_source

    for p in leave_one_generator_out(open_source(str(prompt_manifest)), 0.4):
        assert len([s for s in p.test if s.label == 1]) == 12


def test_cli_group_by_records_the_grouped_split(tmp_path, prompt_manifest):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, REALJUDGE_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "realjudge", "train", "cifake-cnn", "--data", str(prompt_manifest), "--epochs", "1",
           "--batch-size", "8", "--set", 'arch_kwargs={"n_conv":1,"filters":4,"units":8}', "--set", "threads=1",
           "--set", "val_fraction=0.3", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    res = subprocess.run(cmd + ["--group-by", PATTERN], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "run" / "bundle" / "bundle.json").read_text())
    assert repr(PATTERN) in meta["training"]["val_split"]
    assert meta["training_config"]["sources"][0]["group"] == PATTERN
    bad = subprocess.run(cmd + ["--group-by", "("], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "not a regular expression" in bad.stderr and "Traceback" not in bad.stderr
