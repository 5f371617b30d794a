"""The fuzzing harness (benchmarks/fuzz.py), short and seeded: about 1,500 mutated images, archives
and upload bodies through decode, the data layer, detect, the CLI and the upload parser. No input may
crash (an exception other than the documented clean errors), hang (a stage over its time limit) or
put a traceback in front of a user. The long run's figures are in docs/reliability/fuzz.json."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"


def load_harness():
    """benchmarks/ is no package: the harness is loaded from its file (once: its dataclasses need a module)."""
    if "realjudge_fuzz_harness" in sys.modules:
        return sys.modules["realjudge_fuzz_harness"]
    spec = importlib.util.spec_from_file_location("realjudge_fuzz_harness", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_short_seeded_fuzz_finds_no_crash_hang_or_traceback(tmp_path):
    import torch

    fuzz = load_harness()
    threads = torch.get_num_threads()
    try:
        s = fuzz.run_fuzz(1500, seed=20240601, time_limit=2.0, detect_every=25, cli_every=300,
                          out=tmp_path / "fuzz.json")
    finally:
        torch.set_num_threads(threads)
    assert s["inputs_tried"] == 1500 and s["complete"]
    assert set(s["by_kind"]) == set(fuzz.KINDS)  # every format, archive and body kind was drawn
    assert {"decode", "layouts", "detect", "cli", "upload"} <= set(s["stages"])
    assert s["crashes"] == 0, s["crash_list"][:3]
    assert s["hangs"] == 0, s["hang_list"][:3]
    assert s["tracebacks"] == 0, s["traceback_list"][:3]
    assert s["distinct_clean_reasons"] > 20  # the mutations reach past the first check of each reader
    assert (tmp_path / "fuzz.json").is_file()


def test_mutators_are_deterministic_and_change_their_input():
    fuzz = load_harness()
    f = fuzz.Fuzzer(fuzz.Results(0, 0, 2.0))
    try:
        changed = 0
        for kind in fuzz.KINDS:
            for mseed in range(20):
                case = fuzz.Case(kind, seed=mseed, layout=mseed % 8, mseed=mseed * 7919, n_ops=2)
                a, b = f.build(case), f.build(case)
                assert a == b
                seed_bytes = (f.images.get(kind) or f.archives.get(kind) or [x for x, _ in f.bodies[kind]])
                changed += a[0] not in seed_bytes
        assert changed > 0.8 * 20 * len(fuzz.KINDS)
    finally:
        f.close()
