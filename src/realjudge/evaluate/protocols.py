from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.samples import Sample, is_validation, iter_sample_bytes, split_key

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
    todo = [s for s in samples if not s.has_id]
    for s, blob in iter_sample_bytes(todo):
        if isinstance(blob, bytes):
            s.learn_id(blob)
    return [s for s in samples if s.has_id]


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
