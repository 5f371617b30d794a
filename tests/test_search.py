"""The topology search: tiny grids on generated images, resumption, the two stages, TPE, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

TOPS = ["1x4/1x8", "1x8/0x8", "2x4/1x8"]


@pytest.fixture(autouse=True)
def _one_thread_and_own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REALJUDGE_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _settings(data, out, **kw):
    from realjudge.search import SearchSettings

    defaults = {"sources": [str(data)], "out": str(out), "epochs": 1, "val_fraction": 0.25, "batch_size": 16,
                "device": "cpu", "threads": 1}
    return SearchSettings(**(defaults | kw))


@pytest.fixture
def count_fits(monkeypatch):
    from realjudge.train.engine import Trainer

    calls = []
    real_fit = Trainer.fit

    def fit(self, *a, **kw):
        calls.append(self.cfg.arch_kwargs)
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(Trainer, "fit", fit)
    return calls


def test_custom_grid_table_bundle_and_resumption(tiny_flat, tmp_path, count_fits):
    import realjudge
    from realjudge.search import Topology, run_search

    out = tmp_path / "search"
    tops = [Topology.parse(s) for s in TOPS[:2]]
    summary = run_search(_settings(tiny_flat, out), grid="custom", topologies=tops, log=lambda m: None)
    assert len(count_fits) == 2
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["topology"] for r in rows] == TOPS[:2] and {r["rank"] for r in rows} == {"1", "2"}
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1 and float(r["train_s"]) > 0 and int(r["macs"]) > 0
    md = (out / "table.md").read_text()
    assert "| 1 | custom | 1x4/1x8 |" in md and "| 2 | custom | 1x8/0x8 |" in md
    det = realjudge.load(summary["bundle"], device="cpu")
    assert det.info.arch_kwargs == Topology.parse(summary["best"]["topology"]).kwargs()
    rec = det.predict(np.zeros((32, 32, 3), np.uint8))
    assert rec.p_fake is not None
    _check_record(det, rec)
    meta = json.loads((Path(summary["bundle"]) / "bundle.json").read_text())
    assert rec.model == det.name == meta["name"] == "cifake-cnn-search"  # the record names the exported model
    assert meta["search"]["topology"] == summary["best"]["topology"]
    # The bundle holds the winner's weights: the detector's scores of the validation images reproduce
    # the AUC the search recorded for the winner (and the bundle for itself), better than chance.
    from realjudge.train.batches import load_split

    val = load_split(_settings(tiny_flat, out).config(), det.info.policy, False).val
    recs = det.predict(list(val.pixels))
    for r in recs:
        _check_record(det, r)
    auc = _auc(val.labels, [r.p_fake for r in recs])
    assert auc == pytest.approx(summary["best"]["roc_auc"]) == pytest.approx(meta["val_metrics"]["roc_auc"])
    assert auc > 0.6

    # a second run with one more topology trains only the new one
    again = run_search(_settings(tiny_flat, out), grid="custom", topologies=[Topology.parse(s) for s in TOPS],
                       log=lambda m: None, export=False)
    assert len(count_fits) == 3 and count_fits[-1] == Topology.parse(TOPS[2]).kwargs()
    assert [r["accuracy"] for r in again["rows"][:2]] == [r["accuracy"] for r in summary["rows"]]


def _auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels), np.asarray(scores)))


def _check_record(det, r) -> None:
    """A scored record: a probability, the detector's name and threshold, and the verdict they imply."""
    assert r.ok and r.error is None and 0.0 <= r.p_fake <= 1.0
    assert r.model == det.name and r.threshold == det.threshold
    assert r.p_fake == pytest.approx(float(det.calibration.probability(np.array([r.logit]))[0]), abs=1e-6)
    lo, hi = det.calibration.uncertain_band
    if lo < r.p_fake < hi:
        assert r.verdict == "uncertain", (r.p_fake, lo, hi)
    else:
        assert r.verdict == ("fake" if r.p_fake >= r.threshold else "real"), (r.p_fake, r.threshold)


def test_the_exported_winner_beats_chance_on_unseen_images(tiny_flat, tmp_path):
    from conftest import make_images

    import realjudge
    from realjudge.search import Topology, run_search

    # A few epochs at a high learning rate: enough for the checkerboard trace of the fakes to be learnt.
    settings = _settings(tiny_flat, tmp_path / "s", epochs=3, lr=3e-2, batch_size=8)
    summary = run_search(settings, grid="custom", topologies=[Topology.parse("1x8/0x8")], log=lambda m: None)
    det = realjudge.load(summary["bundle"], device="cpu")
    reals, fakes = make_images(24, seed=31)  # images the search never saw
    recs = det.predict(reals + fakes)
    labels = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    p = np.array([r.p_fake for r in recs])
    for r in recs:
        _check_record(det, r)
    assert _auc(labels, p) > 0.7
    assert np.mean((p >= det.threshold) == labels) > 0.6  # the calibrated threshold decides better than chance
    # A threshold of the caller's overrides the calibrated one (and its uncertain band).
    assert {r.verdict for r in det.predict(reals + fakes, threshold=0.0)} == {"fake"}
    low = det.predict(reals + fakes, threshold=0.0)
    assert [r.p_fake for r in low] == pytest.approx(list(p)) and all(r.threshold == 0.0 for r in low)


def test_interrupted_search_resumes_without_retraining(tiny_flat, tmp_path, count_fits):
    from realjudge.search import Topology, run_search

    out = tmp_path / "search"
    tops = [Topology.parse(s) for s in TOPS]

    def killer(msg):
        if msg.startswith("[2]"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(_settings(tiny_flat, out), grid="custom", topologies=tops, log=killer)
    assert set(json.loads((out / "results.json").read_text())["results"]) == set(TOPS[:2])
    lines = []
    run_search(_settings(tiny_flat, out), grid="custom", topologies=tops, log=lines.append, export=False)
    assert len(count_fits) == 3  # two before the kill, one after
    assert sum("(cached)" in m for m in lines) == 2


def test_other_settings_are_refused(tiny_flat, tmp_path):
    from realjudge.errors import UsageError
    from realjudge.search import Topology, run_search

    out = tmp_path / "search"
    run_search(_settings(tiny_flat, out), grid="custom", topologies=[Topology.parse(TOPS[0])], log=lambda m: None,
               export=False)
    with pytest.raises(UsageError, match="other settings"):
        run_search(_settings(tiny_flat, out, seed=1), grid="custom", topologies=[Topology.parse(TOPS[0])],
                   log=lambda m: None, export=False)


def test_two_stages_use_the_best_convolution_stage(tiny_flat, tmp_path):
    from realjudge.search import Search, best_row
    from realjudge.search.runner import paper_grid

    search = Search(_settings(tiny_flat, tmp_path / "s"), log=lambda m: None)
    rows = paper_grid(search, conv=[(1, 4), (1, 8)], layers=(1,), units=(8, 64))
    assert [r["#"] for r in rows] == [1, 2, 3, 4] and [r["stage"] for r in rows] == ["conv"] * 2 + ["dense"] * 2
    best = best_row(rows[:2])
    assert {(r["n_conv"], r["filters"]) for r in rows[2:]} == {(best["n_conv"], best["filters"])}
    repeat = [r for r in rows[2:] if r["units"] == 64]
    assert repeat[0]["note"] == f"same network as #{best['#']}" and repeat[0]["accuracy"] == best["accuracy"]


def test_budget_sets_epochs(tiny_flat, tmp_path):
    from realjudge.search import Search

    search = Search(_settings(tiny_flat, tmp_path / "s", budget=10_000), log=lambda m: None)
    n = len(search.split.train.labels)
    assert search.epochs == round(10_000 / n)


def _hooked_macs(model, size=32):
    macs = []

    def conv(m, i, o):
        macs.append(o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    def lin(m, i, o):
        macs.append(m.in_features * m.out_features)

    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(conv)
        elif isinstance(mod, torch.nn.Linear):
            mod.register_forward_hook(lin)
    model(torch.zeros(1, 3, size, size))
    return sum(macs)


@pytest.mark.parametrize("spec", ["1x16/1x64", "2x32/1x64", "3x128/3x4096", "2x8/0x8"])
def test_analytic_cost_matches_the_network(spec):
    from realjudge.models import create_model
    from realjudge.search import Topology, count_macs, count_params

    t = Topology.parse(spec)
    model = create_model("cifake-cnn", **t.kwargs())
    assert count_params(t) == sum(p.numel() for p in model.parameters())
    assert count_macs(t) == _hooked_macs(model)


def test_paper_grid_is_36_networks():
    from realjudge.search import Topology, conv_stage, dense_stage

    stage1 = conv_stage()
    stage2 = dense_stage(Topology(2, 32, 1, 64))
    assert len(stage1) == 12 and len(stage2) == 24 and len(set(stage1 + stage2)) == 35  # 2x32/1x64 is in both


def test_tpe_resumes_with_its_trials(tiny_flat, tmp_path, count_fits):
    from realjudge.search import run_search

    out = tmp_path / "tpe"
    first = run_search(_settings(tiny_flat, out, subset=24), strategy="tpe", trials=2, log=lambda m: None, export=False)
    assert len(first["rows"]) == 2 and all(r["stage"] == "tpe" for r in first["rows"])
    n = len(count_fits)
    more = run_search(_settings(tiny_flat, out, subset=24), strategy="tpe", trials=3, log=lambda m: None, export=False)
    assert [r["topology"] for r in more["rows"][:2]] == [r["topology"] for r in first["rows"]]
    assert len(more["rows"]) == 3 and len(count_fits) - n <= 1  # at most the one new trial trains


def test_search_command(tiny_flat, tmp_path):
    from realjudge.cli import main

    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["search", str(tiny_flat), "--grid", "custom", "--topology", "1x4/1x8",
                                    "--epochs", "1", "--out", str(out), "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert (out / "table.md").is_file() and (out / "best" / "bundle.json").is_file() and "best: 1x4/1x8" in res.output
    bad = CliRunner().invoke(main, ["search", str(tiny_flat), "--topology", "2by32", "--out", str(out)])
    assert bad.exit_code == 2 and "NCONVxFILTERS" in bad.output


def test_networks_over_the_mac_cap_are_listed_not_trained(tiny_flat, tmp_path, count_fits):
    from realjudge.search import Topology, count_macs, run_search

    tops = [Topology.parse(s) for s in TOPS[:2]]
    cap = min(count_macs(t) for t in tops)
    summary = run_search(_settings(tiny_flat, tmp_path / "s", max_macs=cap), grid="custom", topologies=tops,
                         log=lambda m: None)
    cheap, costly = sorted(summary["rows"], key=lambda r: r["macs"])
    assert len(count_fits) == 1 and costly["accuracy"] is None and costly["rank"] is None and "cap" in costly["note"]
    assert summary["best"]["topology"] == cheap["topology"]
    assert f"| {costly['#']} | custom | {costly['topology']} |" in (tmp_path / "s" / "table.md").read_text()


def test_dense_stage_on_a_given_convolution_stage(tiny_flat, tmp_path):
    from realjudge.search import Search
    from realjudge.search.runner import paper_grid

    search = Search(_settings(tiny_flat, tmp_path / "s"), log=lambda m: None)
    rows = paper_grid(search, conv=[(1, 4), (1, 8)], layers=(1,), units=(8,), dense_base=(2, 4))
    assert rows[-1]["topology"] == "2x4/1x8" and rows[-1]["stage"] == "dense"
