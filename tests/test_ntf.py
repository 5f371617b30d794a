"""NTF model: shapes, stages, fused score, ablation switches, and a tiny two-stage training run."""

import json
import os

import numpy as np
import pytest
import torch

from realjudge.models.registry import create_model, get_entry

torch.set_num_threads(1)
SMALL = {"widths": [8, 16], "dim": 16, "n_prototypes": 4}


def test_registered_with_native_policy():
    e = get_entry("ntf")
    assert e.policy.kind == "crop"


@pytest.mark.parametrize("kwargs", [{}, {"prototypes": False}, {"loss": "supcon"}, {"loss": "bce"},
                                    {"encoder": "scratch"}])
def test_forward_embed_and_losses(kwargs):
    torch.manual_seed(0)
    m = create_model("ntf", **(SMALL | kwargs))
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 0, 0, 1, 1, 1.0])
    assert m(x).shape == (6,)
    e = m.embed(x)
    assert e["z_hom"].shape == (6, 16) and torch.allclose(e["z_hom"].norm(dim=1), torch.ones(6), atol=1e-5)
    assert m.fusion_parts(x).shape == (6, 2)
    m.train()
    for stage in (1, 2):
        m.set_stage(stage)
        loss, logits = m.training_loss(x, y)
        assert torch.isfinite(loss) and logits.shape == (6,)
        loss.backward()
    if kwargs.get("loss") == "bce":
        assert set(m.last_terms) == {"bce"}
    if kwargs.get("prototypes") is False:
        assert m.traces().shape[0] == 0 and torch.all(e["s_trace"] == 0)


def test_stage1_uses_only_reals():
    torch.manual_seed(0)
    m = create_model("ntf", **SMALL)
    m.set_stage(1)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    loss, _ = m.training_loss(x, torch.tensor([0, 0, 1, 1.0]))
    loss.backward()
    assert x.grad[2:].abs().sum() == 0 and x.grad[:2].abs().sum() > 0


def test_fusion_is_fitted_and_used():
    torch.manual_seed(0)
    m = create_model("ntf", **SMALL).eval()
    rng = np.random.default_rng(0)
    head = rng.normal(size=200)
    trace = rng.normal(size=200)
    y = (trace < 0).astype(int)  # the trace alone separates: the fit must weigh it negatively
    w = m.fit_fusion(np.stack([head, trace], 1), y)
    assert w[1] < 0 and abs(w[1]) > abs(w[0])
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        e = m.embed(x)
        assert torch.allclose(m(x), w[0] * e["head"] + w[1] * e["s_trace"] + w[2], atol=1e-5)


@pytest.fixture(scope="module")
def patch_folder(tmp_path_factory):
    from conftest import make_images, save

    root = tmp_path_factory.mktemp("ntfdata")
    reals, fakes = make_images(24, seed=3, size=48)
    for i, (r, f) in enumerate(zip(reals, fakes)):
        save(r, root / "real" / f"r{i}.png")
        save(f, root / "fake" / f"f{i}.png")
    return root


def _train(tmp_path, patch_folder, arch_kwargs, **cfg_extra):
    from realjudge.train.config import TrainConfig
    from realjudge.train.engine import Trainer

    os.environ["REALJUDGE_CACHE"] = str(tmp_path / "cache")
    opts = dict(val_fraction=0.25, epochs=3, batch_size=16, lr=3e-3, threads=1, schedule="constant") | cfg_extra
    cfg = TrainConfig(arch="ntf", arch_kwargs=SMALL | arch_kwargs, policy={"size": 32, "crops": 2},
                      sources=[{"path": str(patch_folder / "real"), "label": "real"},
                               {"path": str(patch_folder / "fake"), "label": "fake"}], **opts)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    return trainer, trainer.export(tmp_path / "bundle", "ntf-tiny")


def test_two_stage_training_exports_fused_bundle(tmp_path, patch_folder):
    from realjudge.detector import load

    trainer, bundle = _train(tmp_path, patch_folder, {}, stage1_epochs=2, train_patches=3,
                             patch_augment=["rescale", "jpeg"], augment=["hflip", "jpeg"])
    stage1 = json.loads((tmp_path / "run" / "stage1.json").read_text())
    assert len(stage1) == 2 and {"het", "proto", "usage", "var", "orth"} <= set(stage1[0])
    meta = json.loads((bundle / "bundle.json").read_text())
    w = meta["score_fusion"]["weights"]
    assert len(w) == 3 and meta["training"]["stage1_history"]
    det = load(str(bundle), "cpu")
    assert det.model.fusion.tolist() == pytest.approx(w)  # the fusion travels in model.safetensors
    from conftest import make_images

    reals, fakes = make_images(4, seed=11, size=48)
    recs = det.predict(reals + fakes)
    assert all(r.ok and r.model == "ntf-tiny" for r in recs)
    assert "crop" in recs[0].preprocess


ABLATIONS = {"full": {}, "no-prototypes": {"prototypes": False}, "supcon": {"loss": "supcon"}, "bce": {"loss": "bce"},
             "hard": {"soft": False}}


def _loss_on_one_batch(kwargs, stage):
    """Model (same seed: same weights whatever the switch), loss and named terms on one fixed batch."""
    torch.manual_seed(0)
    m = create_model("ntf", **(SMALL | kwargs)).train()
    m.set_stage(stage)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 3, 32, 32, generator=g)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1.0])
    torch.manual_seed(1)  # stage 1's random views: the same for every variant
    loss, _ = m.training_loss(x, y)
    loss.backward()
    return m, float(loss.detach()), dict(m.loss_terms())


def _grad(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_each_ablation_switch_changes_the_model_or_the_loss():
    runs = {k: _loss_on_one_batch(v, 2) for k, v in ABLATIONS.items()}
    full_m, _, full = runs["full"]
    # The same weights in every variant: the classifier term is the same, the switches act elsewhere.
    for name, (m, loss, terms) in runs.items():
        assert terms["bce"] == pytest.approx(full["bce"], rel=1e-6), name
        assert loss == pytest.approx(sum(terms.values()), rel=1e-5), name  # the loss is the sum of its terms
    # Prototypes off: no traces at all (an empty parameter, nothing to fuse), the rest of the net unchanged.
    no_proto = runs["no-prototypes"][0]
    assert no_proto.prototypes.shape == (0, SMALL["dim"]) and not no_proto.use_prototypes
    assert full_m.prototypes.shape == (SMALL["n_prototypes"], SMALL["dim"])
    assert sum(p.numel() for p in full_m.parameters()) - sum(p.numel() for p in no_proto.parameters()) \
        == SMALL["n_prototypes"] * SMALL["dim"]
    with torch.no_grad():
        x = torch.randn(4, 3, 32, 32)
        assert torch.all(no_proto.embed(x)["s_trace"] == 0) and torch.any(full_m.eval().embed(x)["s_trace"] != 0)
    parts = np.random.default_rng(0).normal(size=(40, 2))
    assert no_proto.fit_fusion(parts, (parts[:, 1] > 0).astype(int))[1] == 0.0  # the trace never enters the score
    # bce: the classifier alone, no contrastive term, so neither the homogeneous head nor the traces learn.
    bce_m, bce_loss, bce = runs["bce"]
    assert set(bce) == {"bce"} and bce_loss == pytest.approx(bce["bce"], rel=1e-6)
    assert _grad(bce_m.hom) == 0 and _grad(bce_m.cls) > 0
    assert bce_m.prototypes.grad is None or float(bce_m.prototypes.grad.abs().sum()) == 0
    # Every other variant has a contrastive term, and each switch gives a different one.
    for name in ("full", "no-prototypes", "supcon", "hard"):
        assert set(runs[name][2]) == {"bce", "contrast"} and _grad(runs[name][0].hom) > 0, name
    contrast = {name: runs[name][2]["contrast"] for name in ("full", "no-prototypes", "supcon", "hard")}
    values = list(contrast.values())
    assert all(abs(a - b) > 1e-6 for i, a in enumerate(values) for b in values[i + 1:]), contrast
    assert len({round(loss, 6) for _, loss, _ in runs.values()}) == len(runs)  # five different losses
    # The soft loss pulls on the traces (they are real anchors); supcon never looks at them.
    assert float(full_m.prototypes.grad.abs().sum()) > 0
    sup = runs["supcon"][0]
    assert sup.prototypes.grad is None or float(sup.prototypes.grad.abs().sum()) == 0


def test_ablations_in_stage1_drop_only_the_prototype_terms():
    full = _loss_on_one_batch({}, 1)[2]
    assert set(full) == {"het", "var", "orth", "proto", "usage"}
    no_proto = _loss_on_one_batch({"prototypes": False}, 1)[2]
    assert set(no_proto) == {"het", "var", "orth"}
    assert all(no_proto[k] == pytest.approx(full[k], rel=1e-6) for k in no_proto)  # the rest is untouched
    for kind in ({"loss": "supcon"}, {"loss": "bce"}, {"soft": False}):  # stage-2 switches leave stage 1 alone
        assert _loss_on_one_batch(kind, 1)[2] == pytest.approx(full, rel=1e-6), kind


@pytest.mark.parametrize("kwargs", [{"prototypes": False}, {"loss": "supcon"}, {"loss": "bce"}])
def test_ablations_train_end_to_end(tmp_path, patch_folder, kwargs):
    from realjudge.detector import load

    _, bundle = _train(tmp_path, patch_folder, kwargs, stage1_epochs=1)
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["arch_kwargs"] == SMALL | kwargs
    # The bundle's model is the ablated one, and the training logs show the ablated losses.
    model = load(str(bundle), "cpu").model
    protos = kwargs.get("prototypes", True)
    assert model.use_prototypes == protos and model.loss_kind == kwargs.get("loss", "soft")
    assert model.prototypes.shape[0] == (SMALL["n_prototypes"] if protos else 0)
    stage1 = json.loads((tmp_path / "run" / "stage1.json").read_text())
    assert len(stage1) == 1 and ({"proto", "usage"} <= set(stage1[0])) == protos
    w = meta["score_fusion"]["weights"]
    assert (w[1] == 0.0) == (not protos)  # without traces the fused score is the head alone
    assert [h["epoch"] for h in meta["training"]["history"]] == [1, 2, 3]
    assert all(np.isfinite(h["train_loss"]) for h in meta["training"]["history"])


def test_no_stage1_skips_it(tmp_path, patch_folder, monkeypatch):
    from realjudge.models.ntf import NTF

    stages = []
    real = NTF.set_stage
    monkeypatch.setattr(NTF, "set_stage", lambda self, s: (stages.append(s), real(self, s))[1])
    trainer, bundle = _train(tmp_path, patch_folder, {}, stage1_epochs=0)
    assert not (tmp_path / "run" / "stage1.json").exists()
    assert not (tmp_path / "run" / "stage1.safetensors").exists()
    assert stages == [] and trainer.model.stage == 2  # never switched to the self-supervised stage
    assert "stage1_history" not in json.loads((bundle / "bundle.json").read_text())["training"]


def test_stage1_defaults_to_the_models_own(tmp_path, patch_folder):
    _train(tmp_path, patch_folder, {}, epochs=1)
    stage1 = json.loads((tmp_path / "run" / "stage1.json").read_text())
    assert len(stage1) == 3


def test_router_sends_large_images_to_the_natural_detector(tmp_path, patch_folder, tiny_bundle, monkeypatch):
    import shutil

    import realjudge.bundle as bundle_mod
    from realjudge.detector import load_for_inputs

    _, ntf_bundle = _train(tmp_path, patch_folder, {}, stage1_epochs=1, epochs=1)
    shipped = tmp_path / "shipped"
    shutil.copytree(tiny_bundle, shipped / "cifake")
    shutil.copytree(ntf_bundle, shipped / "natural")
    monkeypatch.setattr(bundle_mod, "SHIPPED_DIR", shipped)
    from conftest import make_images

    small = make_images(1, seed=2, size=32)[0][0]
    large = make_images(1, seed=2, size=200)[0][0]
    recs = list(load_for_inputs(None, "cpu").predict_iter([(small, "small"), (large, "large")]))
    assert [r.model for r in recs] == ["tiny", "ntf-tiny"]
    assert "crop" in recs[1].preprocess and "resized" not in recs[1].preprocess


def test_fused_ntf_bundle_joins_an_ensemble_with_its_fusion(tmp_path, patch_folder):
    from realjudge.detector import load
    from realjudge.train.stacking import combine
    from realjudge.errors import UsageError

    _, ntf_bundle = _train(tmp_path / "a", patch_folder, {}, stage1_epochs=1, epochs=1)
    _, other = _train(tmp_path / "b", patch_folder, {"loss": "bce"}, stage1_epochs=0, epochs=1, seed=5)
    ens_dir = combine([str(ntf_bundle), str(other)], tmp_path / "ens", "pair")
    ens, a, b = (load(str(p), "cpu") for p in (ens_dir, ntf_bundle, other))
    assert "score_fusion" in a.info.meta
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32))
    with torch.inference_mode():  # each member keeps its fused score inside the ensemble
        assert torch.allclose(ens.model(x), (a.model(x) + b.model(x)) / 2, atol=1e-5)
    with pytest.raises(UsageError, match="cannot join an ensemble"):
        combine([str(ens_dir), str(ntf_bundle)], tmp_path / "nested", "nested")


def test_stage1_sources_take_only_the_reals_of_a_labelled_source(tmp_path, patch_folder):
    from realjudge.errors import SourceError
    from realjudge.preprocess import InputPolicy
    from realjudge.train.config import TrainConfig
    from realjudge.train.batches import load_stage1_reals

    os.environ["REALJUDGE_CACHE"] = str(tmp_path / "cache")
    policy = InputPolicy(kind="crop", size=32, crops=1)
    n_real = len(list((patch_folder / "real").iterdir()))

    def reals(spec, **extra):
        cfg = TrainConfig(arch="ntf", sources=[{"path": str(patch_folder)}], stage1_sources=[spec], val_fraction=0.25, **extra)
        return load_stage1_reals(cfg, policy, progress=False)

    labelled = reals({"path": str(patch_folder)})  # flat real/ + fake/: the fakes must stay out
    unlabelled = reals({"path": str(patch_folder / "real")})  # an unlabelled folder counts as real
    assert 0 < len(labelled) == len(unlabelled) <= n_real
    assert len(reals({"path": str(patch_folder)}, stage1_subset=5)) <= 5  # a random part of a large source
    with pytest.raises(SourceError, match="real images only"):
        reals({"path": str(patch_folder / "fake"), "label": "fake"})
