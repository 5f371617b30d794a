"""Evaluation protocols as code: train-on-X / test-on-Y over sources and generators.

- `leave_one_generator_out(samples)`: for each generator g, train on the other generators' fakes and
  on the training-side reals; test on every fake of g (never seen) against the test-side reals.
- `cross_dataset(groups)`: train on one data set's training side, test on every other data set's
  test side (e.g. CIFAKE -> natural photographs and back).
- `run_protocols(...)` trains one detector per protocol with the shared engine and evaluates it with
  the shared evaluation code (optionally under perturbations); `matrix_table` / `protocol_table`
  render Markdown, and the result dict is plain JSON.

Reals and fakes are split by a salted hash of their bytes (`TEST_SALT`), or of their group where
they have one (`io.sources.split_key`: one prompt rendered by several generators is one group), so
the protocol's test side never overlaps the training side, not even by a near-duplicate picture; the
engine's own validation split (unsalted hash) works inside the training side unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io.sources import Sample, content_id, is_validation, iter_sample_bytes, split_key

TEST_SALT = "protocol-test"
VAL_SALT = "protocol-val"  # the training side's own validation split (calibration, fusion, early stopping)


@dataclass
class Protocol:
    name: str
    train: list[Sample]
    test: list[Sample]
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def with_ids(samples: list[Sample]) -> list[Sample]:
    """Content ids for every sample in one pass over the bytes (archives read sequentially)."""
    todo = [s for s in samples if s._id is None]
    for s, blob in iter_sample_bytes(todo):
        if isinstance(blob, bytes):
            s._id = content_id(blob)
    return [s for s in samples if s._id is not None]


def is_test(s: Sample, fraction: float, salt: str = TEST_SALT) -> bool:
    """Test side of a protocol; `salt=""` reproduces the engine's validation split (to compare with a
    bundle trained by `realjudge train` on its validation images)."""
    return is_validation(split_key(s), fraction, salt=salt)


def leave_one_generator_out(samples: list[Sample], test_fraction: float = 0.3) -> list[Protocol]:
    """Ungrouped fakes: every fake of g is tested, every other fake trains. Grouped fakes (one prompt
    rendered by several generators) follow their group's side: g's fakes are tested only from
    test-side groups and the other generators' fakes train only from training-side groups, so the
    held-out generator is never tested on a picture whose twin was trained on."""
    samples = with_ids(samples)
    reals = [s for s in samples if s.label == 0]
    fakes = [s for s in samples if s.label == 1]
    gens = sorted({s.generator for s in fakes if s.generator})
    out = []
    for g in gens:
        train = [s for s in reals if not is_test(s, test_fraction)] + \
            [s for s in fakes if s.generator != g and (s.group is None or not is_test(s, test_fraction))]
        test = [s for s in reals if is_test(s, test_fraction)] + \
            [s for s in fakes if s.generator == g and (s.group is None or is_test(s, test_fraction))]
        out.append(Protocol(f"train {'+'.join(x for x in gens if x != g)} -> test {g}", train, test, "leave-one-generator-out",
                            {"held_out": g}))
    return out


def leave_one_family_out(samples: list[Sample], family_of, train_only=lambda s: False, test_fraction: float = 0.3,
                         only_train_only: bool = False) -> list[Protocol]:
    """Generator families instead of generators: for each family F (`family_of(fake)`), train on the
    other families' fakes and test on F's fakes against the test-side reals. Samples for which
    `train_only` holds (fakes synthesized from real photographs, and their real copies) join every
    training side and never a test; their test-side pairs are dropped, because a pair shares its
    original photograph's side (`split_key`), so no test real is ever seen as a training fake.

    `only_train_only=True` adds one more protocol: train on the train-only fakes alone (no public fake
    at all), test on every family."""
    samples = with_ids(samples)
    keep = [s for s in samples if not is_test(s, test_fraction) or not train_only(s)]
    reals = [s for s in keep if s.label == 0]
    fakes = [s for s in keep if s.label == 1]
    public = [s for s in fakes if not train_only(s)]
    fams = sorted({family_of(s) for s in public})
    train_reals = [s for s in reals if not is_test(s, test_fraction)]
    test_reals = [s for s in reals if is_test(s, test_fraction) and not train_only(s)]
    synth = [s for s in fakes if train_only(s)]
    out = []
    for fam in fams:
        train = train_reals + synth + [s for s in public if family_of(s) != fam and
                                       (s.group is None or not is_test(s, test_fraction))]
        test = test_reals + [s for s in public if family_of(s) == fam and (s.group is None or is_test(s, test_fraction))]
        out.append(Protocol(f"leave out {fam}", train, test, "leave-one-family-out", {"held_out": fam}))
    if only_train_only and synth:
        out.append(Protocol("synthesized fakes only -> every public family", train_reals + synth,
                            test_reals + [s for s in public if s.group is None or is_test(s, test_fraction)],
                            "synthesized-only", {"held_out": "all"}))
    return out


def cross_dataset(groups: dict[str, list[Sample]], test_fraction: float = 0.3) -> list[Protocol]:
    groups = {k: with_ids(v) for k, v in groups.items()}
    out = []
    for a, sa in groups.items():
        for b, sb in groups.items():
            if a != b:
                out.append(Protocol(f"train {a} -> test {b}", [s for s in sa if not is_test(s, test_fraction)],
                                    [s for s in sb if is_test(s, test_fraction)], "cross-dataset", {"train": a, "test": b}))
    return out


def in_distribution(name: str, samples: list[Sample], test_fraction: float = 0.3, salt: str = TEST_SALT) -> Protocol:
    samples = with_ids(samples)
    return Protocol(f"train {name} -> test {name}", [s for s in samples if not is_test(s, test_fraction, salt)],
                    [s for s in samples if is_test(s, test_fraction, salt)], "in-distribution", {"train": name, "test": name})


def balanced_subset(samples: list[Sample], per_class: int, seed: int = 0) -> list[Sample]:
    """At most `per_class` samples of each label (random, seeded): keeps CPU protocols affordable."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    for lab in (0, 1):
        cls = [s for s in samples if s.label == lab]
        rows = sorted(rng.choice(len(cls), min(per_class, len(cls)), replace=False)) if cls else []
        out += [cls[i] for i in rows]
    return out


def build_split(cfg, policy, train_samples: list[Sample], progress: bool = False):
    """Engine Split from explicit samples: the training side is split again (split key salted with
    `VAL_SALT`) into training and validation; validation gets the policy's detection views."""
    from ..io.cache import load_arrays
    from ..train.data import Split, load_patches

    train_samples = with_ids(train_samples)
    val = [s for s in train_samples if is_validation(split_key(s), cfg.val_fraction, salt=VAL_SALT)]
    tr = [s for s in train_samples if not is_validation(split_key(s), cfg.val_fraction, salt=VAL_SALT)]
    if policy.kind == "resize":
        return Split(load_arrays(tr, policy.size, policy.filter, progress=progress),
                     load_arrays(val, policy.size, policy.filter, progress=progress))
    return Split(load_patches(tr, policy, progress, cfg.train_patches, 0.0, cfg.patch_augment, cfg.seed),
                 load_patches(val, policy, progress, 0, 0.0, (), cfg.seed))


def train_detector(cfg, train_samples: list[Sample], run_dir: str | Path, name: str, progress: bool = False):
    """Train with the shared engine on explicit samples; returns (Detector, bundle path)."""
    from ..detector import load
    from ..train.engine import Trainer

    trainer = Trainer(cfg, run_dir, progress=progress)
    split = build_split(cfg, trainer.policy, train_samples, progress)
    trainer.fit(resume=(Path(run_dir) / "checkpoint.json").exists(), split=split)
    bundle = trainer.export(Path(run_dir) / "bundle", name)
    return load(str(bundle), "cpu"), bundle


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The figures a protocol table shows: AP, real/fake accuracy, and per generator real-acc/fake-acc/AP."""
    o = result["overall"]
    gens = {g: {"ap": m["ap"], "real_accuracy": m["real_accuracy"], "fake_accuracy": m["fake_accuracy"], "n_fake": m["n_fake"]}
            for g, m in result.get("per_generator", {}).items() if not g.startswith("_")}
    aps = [m["ap"] for m in gens.values() if m["ap"] is not None]
    out = {"ap": o["ap"], "roc_auc": o["roc_auc"], "accuracy": o["accuracy"], "real_accuracy": o["real_accuracy"],
           "fake_accuracy": o["fake_accuracy"], "n_real": o["n_real"], "n_fake": o["n_fake"], "per_generator": gens,
           "mean_ap": float(np.mean(aps)) if aps else o["ap"]}
    if result.get("perturbations"):
        out["perturbations"] = {k: {"ap": v["ap"], "real_accuracy": v["real_accuracy"], "fake_accuracy": v["fake_accuracy"]}
                                for k, v in result["perturbations"].items()}
    return out


def protocol_record(p: Protocol, result: dict[str, Any]) -> dict[str, Any]:
    """One protocol's stored result: what was trained and tested, and the summary of its evaluation."""
    return {"kind": p.kind, "meta": p.meta, "n_train": len(p.train), "n_test": len(p.test)} | summarise(result)


def run_protocols(protocols: list[Protocol], cfg, out_dir: str | Path, perturbations=None, progress: bool = False,
                  detector=None) -> dict[str, Any]:
    """Train (unless `detector` is given: then it is evaluated as is) and evaluate every protocol.
    Results are written to `out_dir/protocols.json` after each protocol, so a long run keeps its progress."""
    from .run import evaluate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "protocols.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for i, p in enumerate(protocols):
        if p.name in results:
            continue
        det = detector
        if det is None:
            det, _ = train_detector(replace(cfg), p.train, out_dir / f"run{i}", f"{cfg.arch}-{i}", progress)
        res, _, _ = evaluate(det, p.test, perturbations)
        results[p.name] = protocol_record(p, res)
        path.write_text(json.dumps(results, indent=2, default=float))
    return results


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def protocol_table(results: dict[str, Any]) -> str:
    """One row per protocol: AP, mean AP over generators, real and fake accuracy."""
    lines = ["| protocol | n train | n test | AP | mean AP (generators) | real acc | fake acc |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n_train']} | {r['n_test']} | {_f(r['ap'])} | {_f(r['mean_ap'])} | "
                     f"{_f(r['real_accuracy'])} | {_f(r['fake_accuracy'])} |")
    return "\n".join(lines) + "\n"


def generator_table(results: dict[str, Any]) -> str:
    """Per protocol and generator: real accuracy, fake accuracy and AP (that generator's fakes vs all test reals)."""
    lines = ["| protocol | generator | real acc | fake acc | AP |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for g, m in r["per_generator"].items():
            lines.append(f"| {name} | {g} | {_f(m['real_accuracy'])} | {_f(m['fake_accuracy'])} | {_f(m['ap'])} |")
    return "\n".join(lines) + "\n"


def matrix_table(results: dict[str, Any], metric: str = "ap") -> str:
    """Train-on-X (rows) / test-on-Y (columns) matrix of one metric, from protocols with train/test meta."""
    cells = {(r["meta"].get("train"), r["meta"].get("test")): r.get(metric) for r in results.values()
             if "train" in r["meta"] and "test" in r["meta"]}
    rows = sorted({a for a, _ in cells})
    cols = sorted({b for _, b in cells})
    lines = [f"| train \\ test ({metric}) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for a in rows:
        lines.append(f"| {a} | " + " | ".join(_f(cells.get((a, b))) for b in cols) + " |")
    return "\n".join(lines) + "\n"


def degradation_curves(result: dict[str, Any]) -> dict[str, Any]:
    """From an `evaluate` result with perturbations: per family, the clean point and each strength,
    overall AP and per-generator AP / real accuracy / fake accuracy (the data behind the plots)."""
    clean_gen = {g: m.get("ap") for g, m in result.get("per_generator", {}).items() if not g.startswith("_")}
    curves: dict[str, Any] = {}
    for label, entry in result.get("perturbations", {}).items():
        fam, _, value = label.partition(":")
        c = curves.setdefault(fam, {"values": [], "ap": [], "real_accuracy": [], "fake_accuracy": [], "per_generator": {},
                                    "clean_ap": result["overall"]["ap"], "clean_per_generator": clean_gen})
        c["values"].append(float(value) if value else None)
        for k in ("ap", "real_accuracy", "fake_accuracy"):
            c[k].append(entry.get(k))
        for g, m in entry.get("per_generator", {}).items():
            if not g.startswith("_"):
                c["per_generator"].setdefault(g, []).append(m.get("ap"))
    return curves


def plot_degradation(curves: dict[str, Any], out: str | Path, title: str = "") -> list[str]:
    """One PNG per perturbation family: AP against strength, overall (bold) and per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for fam, c in curves.items():
        xs = [v if v is not None else i for i, v in enumerate(c["values"])]
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        ax.plot(xs, [np.nan if v is None else v for v in c["ap"]], "o-", lw=2.5, color="black", label="all")
        if c["clean_ap"] is not None:
            ax.axhline(c["clean_ap"], ls="--", color="grey", label="clean")
        for g, aps in sorted(c["per_generator"].items()):
            ax.plot(xs, [np.nan if v is None else v for v in aps], ".-", alpha=0.8, label=g)
        ax.set(xlabel=fam, ylabel="AP (fake = positive)", ylim=(0, 1.02), title=f"{title} {fam}".strip())
        if fam.startswith("jpeg") or fam == "webp":
            ax.invert_xaxis()  # stronger compression to the right
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"degradation_{fam}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        files.append(name)
    return files


def write_degradation(result: dict[str, Any], out: str | Path) -> list[str]:
    """`degradation.json` + one plot per family under `out` (used by `realjudge evaluate --out`)."""
    curves = degradation_curves(result)
    if not curves:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "degradation.json").write_text(json.dumps(curves, indent=2, default=float))
    return ["degradation.json"] + plot_degradation(curves, out, result.get("model", ""))
