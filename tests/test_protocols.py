"""Protocols: leave-one-generator-out and cross-dataset splits, a tiny protocol run, tables, curves."""

import csv
import os

import pytest

from conftest import make_images, save


@pytest.fixture(scope="module")
def gen_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("gens")
    reals, fakes = make_images(36, seed=21)
    rows = []
    for i, r in enumerate(reals):
        save(r, root / "images" / f"r{i}.png")
        rows.append([f"images/r{i}.png", "real", "real_photo"])
    for i, f in enumerate(fakes):
        save(f, root / "images" / f"f{i}.png")
        rows.append([f"images/f{i}.png", "fake", ["gA", "gB", "gC"][i % 3]])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "generator"])
        w.writerows(rows)
    return root


def test_logo_splits_hold_out_one_generator(gen_manifest):
    from realjudge.evaluate.protocols import leave_one_generator_out
    from realjudge.data.layouts import open_source

    protos = leave_one_generator_out(open_source(str(gen_manifest)), 0.3)
    assert [p.meta["held_out"] for p in protos] == ["gA", "gB", "gC"]
    for p in protos:
        g = p.meta["held_out"]
        assert all(s.generator != g for s in p.train if s.label == 1)
        assert {s.generator for s in p.test if s.label == 1} == {g}
        assert not {s.id for s in p.train} & {s.id for s in p.test}
        assert any(s.label == 0 for s in p.test) and any(s.label == 0 for s in p.train)


def test_cross_dataset_pairs(gen_manifest, tiny_flat):
    from realjudge.evaluate.protocols import cross_dataset
    from realjudge.data.layouts import open_source

    protos = cross_dataset({"a": open_source(str(gen_manifest)), "b": open_source(str(tiny_flat))})
    assert [p.meta for p in protos] == [{"train": "a", "test": "b"}, {"train": "b", "test": "a"}]


def test_run_protocol_tables_and_json(gen_manifest, tmp_path):
    from realjudge.perturb import parse_perturbation
    from realjudge.evaluate.tables import generator_table, matrix_table, protocol_table
    from realjudge.evaluate.protocols import leave_one_generator_out
    from realjudge.evaluate.experiments import run_protocols
    from realjudge.data.layouts import open_source
    from realjudge.train.config import TrainConfig

    os.environ["REALJUDGE_CACHE"] = str(tmp_path / "cache")
    cfg = TrainConfig(arch="cifake-cnn", arch_kwargs={"n_conv": 1, "filters": 8, "units": 16}, val_fraction=0.25,
                      epochs=4, batch_size=16, lr=3e-3, threads=1, schedule="constant")
    protos = leave_one_generator_out(open_source(str(gen_manifest)), 0.3)[:1]
    res = run_protocols(protos, cfg, tmp_path / "p", parse_perturbation("jpeg:75"))
    r = res[protos[0].name]
    assert set(r["per_generator"]) == {"gA"} and r["per_generator"]["gA"]["ap"] is not None
    assert "jpeg:75" in r["perturbations"]
    assert (tmp_path / "p" / "protocols.json").exists()
    assert "gA" in generator_table(res) and protos[0].name in protocol_table(res)
    assert "train" in matrix_table({"x": r | {"meta": {"train": "A", "test": "B"}}})


def test_degradation_curves_and_plots(tmp_path):
    from realjudge.evaluate.plots import degradation_curves, write_degradation

    m = lambda ap: {"ap": ap, "real_accuracy": 0.9, "fake_accuracy": 0.8}  # noqa: E731
    result = {"model": "x", "overall": m(0.95), "per_generator": {"g1": m(0.9), "_mean_ap": 0.9},
              "perturbations": {"jpeg:95": m(0.9) | {"per_generator": {"g1": m(0.85)}},
                                "jpeg:30": m(0.6) | {"per_generator": {"g1": m(0.55)}}}}
    c = degradation_curves(result)["jpeg"]
    assert c["values"] == [95.0, 30.0] and c["per_generator"]["g1"] == [0.85, 0.55] and c["clean_ap"] == 0.95
    files = write_degradation(result, tmp_path)
    assert (tmp_path / "degradation_jpeg.png").exists() and "degradation.json" in files
