"""Write the guarantees table of docs/RELIABILITY.md from the measured results.

Every guarantee realjudge makes about hostile input, overload and crashes, with its limit, the test
that proves it, and the figure measured by the long runs:

    python benchmarks/fuzz.py --inputs 100000 --seed 1 --out docs/reliability/fuzz.json
    python benchmarks/serve_abuse.py                  # writes docs/reliability/serve.json
    python benchmarks/reliability_report.py           # this file: the "guarantees" section

A figure whose result file is missing is shown as "not measured", never guessed. The other sections
of docs/RELIABILITY.md (limits, hostile inputs, the service under abuse) are kept as they are.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from _common import DOCS, write_section

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _load(name: str) -> dict | None:
    path = DOCS / "reliability" / name
    return json.loads(path.read_text()) if path.exists() else None


def _get(d: dict | None, *keys, fmt="{}"):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return "not measured"
        d = d[k]
    return fmt.format(d)


def _test(name: str) -> str:
    """`file::test` after checking that the test exists, so that a renamed test breaks the report."""
    file, _, func = name.partition("::")
    text = (TESTS / file).read_text()
    if func and not re.search(rf"^\s*def {re.escape(func)}\b", text, re.M):
        raise SystemExit(f"reliability_report: {name} does not exist; update the guarantees table")
    return f"`tests/{name}`"


def guarantees(fuzz: dict | None, serve: dict | None) -> list[tuple[str, str, str, str]]:
    thr = (serve or {}).get("d_throughput_32px", {})
    over = (serve or {}).get("c_overload_1024px", {})
    mem = (serve or {}).get("e_memory", {})
    schema = (serve or {}).get("a_fuzzing", {})
    return [
        ("Any input gives a record or a one-line error, never a traceback, and nothing else in the batch is lost",
         "2 s of CPU per input and stage", _test("test_fuzz_short.py"),
         f"{_get(fuzz, 'inputs_tried', fmt='{:,}')} fuzzed inputs: {_get(fuzz, 'crashes')} crashes, "
         f"{_get(fuzz, 'hangs')} hangs, {_get(fuzz, 'tracebacks')} tracebacks; "
         f"{_get(fuzz, 'distinct_clean_reasons')} distinct clean reasons"),
        ("Fuzzing memory stays bounded", "decoder pixel limit 64 MP; archive limits", _test("test_fuzz_short.py"),
         f"peak RSS {_get(fuzz, 'peak_rss_mib', fmt='{:.0f}')} MiB (baseline {_get(fuzz, 'baseline_rss_mib', fmt='{:.0f}')} MiB)"),
        ("A zip bomb is refused by its declared size before inflating, and inflating stops at the limit",
         "256 MiB a member, 4 GiB an archive", _test("test_hostile_inputs.py"), "see the hostile-input table"),
        ("Unsafe member names, links, devices, nested archives, 100,000 members, lying sizes, unreadable and "
         "changing folders: one clean error or a bounded skip each", "250,000 members, depth 1",
         _test("test_hostile_inputs.py"), "see the hostile-input table"),
        ("Every service response matches its OpenAPI schema and none is a 5xx", "every endpoint",
         _test("test_serve_abuse.py"),
         f"{_get(schema, 'calls')} schema-fuzzed calls: {_get(schema, 'server_errors')} 5xx, "
         f"{_get(schema, 'schema_mismatches')} schema mismatches"),
        ("Overload answers 503 with Retry-After, and every request gets an HTTP answer",
         "2 inference workers + a queue of 16", _test("test_serve_abuse.py"),
         f"{_get(over, 'requests', fmt='{:,}')} requests from 64 clients: {_get(over, 'busy_503_with_retry_after', fmt='{:,}')} "
         f"503 with Retry-After (p99 {_get(over, 'busy_p99_ms')} ms), {_get(over, 'no_http_answer')} without an "
         f"HTTP answer; first request after the load {_get(over, 'first_request_after', 'ms')} ms"),
        ("Slow clients and bodies that never end are timed out while others are served",
         "10 s for the head, 8 KiB/s for a body", _test("test_serve_abuse.py"), "see the service section"),
        ("Latency with CIFAKE-size images and 8 clients", "p99 under 250 ms", "benchmarks/serve_abuse.py",
         f"p50 {_get(thr, 'p50_ms')} ms, p99 {_get(thr, 'p99_ms')} ms, {_get(thr, 'requests_per_s')} requests/s"),
        ("Memory under 64 concurrent uploads at the size limit", "workers + queue admitted at once",
         "benchmarks/serve_abuse.py", f"peak RSS {_get(mem, 'rss_peak_mib')} MiB ({_get(mem, 'bound_rule')})"),
        ("A training run killed with SIGKILL mid-epoch resumes to the same weights, losing at most one epoch",
         "bit-identical on CPU", _test("test_crash_resume.py"), "bit-identical (torch.equal) in the test"),
        ("Checkpoints are written atomically; a kill during a save leaves the last good one usable",
         "write then rename; the record inside the weights file", _test("test_crash_resume.py"), "tested"),
        ("No pickle runs where a user loads: bundles, checkpoints, caches, search stores",
         "safetensors, JSON, npy without pickle", _test("test_no_pickle.py"), "static scan + hostile pickles"),
    ]


def render(fuzz: dict | None, serve: dict | None) -> str:
    rows = guarantees(fuzz, serve)
    lines = ["## Guarantees", "",
             "Each guarantee, its limit, the test that proves it and the figure the long runs measured "
             "(written by `python benchmarks/reliability_report.py` from `docs/reliability/*.json`).", "",
             "| guarantee | limit | proved by | measured |", "| --- | --- | --- | --- |"]
    lines += [f"| {g} | {lim} | {test} | {fig} |" for g, lim, test, fig in rows]
    for name, d in (("fuzz.json", fuzz), ("serve.json", serve)):
        if d:
            when = d.get("date") or d.get("finished") or ""
            cmd = (d.get("settings") or {}).get("command") or d.get("command") or ""
            machine = d.get("machine") or d.get("platform") or ""
            lines.append(f"\n`docs/reliability/{name}`: `{cmd.strip()}` {when} {json.dumps(machine) if machine else ''}".rstrip())
    return "\n".join(lines) + "\n"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    path = write_section("RELIABILITY.md", "guarantees", render(_load("fuzz.json"), _load("serve.json")),
                         title="# Reliability\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
