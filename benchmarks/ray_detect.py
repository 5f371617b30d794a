"""`realjudge detect --engine ray` against the local `detect` on one machine, the same generated set.

- local: `realjudge detect DIR --format jsonl` (decoding processes chosen automatically);
- ray, own instance: `realjudge detect DIR --engine ray --out records.jsonl`, which starts a local Ray
  instance (one CPU slot per core) and an actor pool over it;
- ray, joining: the same with `--ray-address` to an instance this script started beforehand, as a
  cluster user runs it (the instance's start-up is then not the command's).

Each is timed as a user runs it, start-up included, on `--n` generated 32x32 PNGs (the shipped `cifake`
detector) and on a tiny set of 16: the tiny run is the fixed cost (imports, model loading, Ray's
instance and actors), and the marginal rate is (n - 16) / (wall_n - wall_tiny). The records files of
the engines are compared record by record: equal but for the last bits of float32 scores where an
image went through a forward pass of another size (the actors' batches do not fall where the local
run's do, and oneDNN's result for one image depends on the pass's size). Needs `pip install 'realjudge[ray]'`.

    python benchmarks/ray_detect.py [--n 5000] [--repeats 1] [--no-docs] [--from-json RUN.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import write_section

TINY = 16


def generate(n: int, out: Path, seed: int = 0) -> None:
    """n 32x32 PNGs: smooth gradients plus noise, every other one with a faint checkerboard."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 32
    checker = ((np.indices((32, 32)).sum(0) % 2) * 2 - 1)[..., None] * 10
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = np.stack([np.sin(x * rng.uniform(1, 4) + rng.uniform(0, 6)), np.cos(y * rng.uniform(1, 4)),
                         np.sin((x + y) * rng.uniform(1, 3))], -1)
        img = 127 + 100 * base + rng.normal(0, 4, (32, 32, 3)) + (checker if i % 2 else 0)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out / f"{i:05d}.png")


def compare(local_text: str, other_text: str) -> dict:
    """How far two records files are apart: same order, records equal, the largest score differences."""
    a = [json.loads(x) for x in local_text.splitlines()]
    b = [json.loads(x) for x in other_text.splitlines()]
    floats = ("p_fake", "logit")
    scored = [(x, y) for x, y in zip(a, b) if x["p_fake"] is not None and y["p_fake"] is not None]
    return {"records": len(b), "same_order": [r["path"] for r in a] == [r["path"] for r in b],
            "identical": sum(x == y for x, y in zip(a, b)),
            "equal_but_floats": len(a) == len(b) and all({k: v for k, v in x.items() if k not in floats}
                                                         == {k: v for k, v in y.items() if k not in floats}
                                                         for x, y in zip(a, b)),
            "max_abs_dp_fake": max((abs(x["p_fake"] - y["p_fake"]) for x, y in scored), default=0.0),
            "max_abs_dlogit": max((abs(x["logit"] - y["logit"]) for x, y in scored), default=0.0)}


def timed(cmd: list[str], stdout=None) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()[-2000:]}")
    return wall


def run_engine(engine: str, folder: Path, out: Path, repeats: int, address: str | None = None) -> float:
    """The best wall time of `repeats` runs; the records land in `out` (jsonl)."""
    base = [sys.executable, "-m", "realjudge", "detect", str(folder), "--model", "cifake", "--no-progress"]
    best = float("inf")
    for _ in range(repeats):
        if engine == "local":
            with open(out, "w") as fh:
                best = min(best, timed(base + ["--format", "jsonl"], stdout=fh))
        else:
            extra = ["--ray-address", address] if address else []
            best = min(best, timed(base + ["--engine", "ray", "--out", str(out)] + extra))
    return best


def measure(n: int, repeats: int) -> dict:
    import ray

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big, tiny = tmp / "set", tmp / "tiny"
        generate(n, big)
        generate(TINY, tiny, seed=1)
        outs = {}
        for engine in ("local", "ray"):
            t_tiny = run_engine(engine, tiny, tmp / f"{engine}-tiny.jsonl", repeats)
            t_big = run_engine(engine, big, outs.setdefault(engine, tmp / f"{engine}.jsonl"), repeats)
            rows[engine] = (t_tiny, t_big)
        # Join an instance started here, as on a cluster: the command then starts actors, not Ray.
        ctx = ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            address = ctx.address_info["gcs_address"]
            t_tiny = run_engine("ray", tiny, tmp / "join-tiny.jsonl", repeats, address)
            t_big = run_engine("ray", big, outs.setdefault("join", tmp / "join.jsonl"), repeats, address)
            rows["join"] = (t_tiny, t_big)
        finally:
            ray.shutdown()
        texts = {k: p.read_text() for k, p in outs.items()}
        assert len(texts["local"].splitlines()) == n
        agreement = {k: compare(texts["local"], texts[k]) for k in ("ray", "join")}

    def figures(key):
        t_tiny, t_big = rows[key]
        return {"wall_tiny_s": t_tiny, "wall_n_s": t_big, "ips": n / t_big,
                "marginal_ips": (n - TINY) / max(t_big - t_tiny, 1e-9)}

    result = {"n": n, "cores": cores, "repeats": repeats, "ray_version": ray.__version__,
              "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
              "agreement_with_local": agreement, **{k: figures(k) for k in rows}}
    local = result["local"]
    for k in ("ray", "join"):
        result[k]["wall_ratio_to_local"] = result[k]["wall_n_s"] / local["wall_n_s"]
        result[k]["marginal_ratio_to_local"] = local["marginal_ips"] / result[k]["marginal_ips"]
    return result


def write_docs(result: dict) -> None:
    n, cores, agreement = result["n"], result["cores"], result["agreement_with_local"]
    local, r, j = result["local"], result["ray"], result["join"]
    worst = max(agreement.values(), key=lambda a: a["max_abs_dp_fake"])
    line = "| {name} | {wall_tiny_s:.1f} | {wall_n_s:.1f} | {ips:.0f} | {marginal_ips:.0f} | {ratio} |"

    def ratio(x):
        return f"{x['wall_ratio_to_local']:.2f}x the time; {x['marginal_ratio_to_local']:.2f}x the marginal time"

    body = f"""## `detect --engine ray` against the local engine, one machine

Command: `python benchmarks/ray_detect.py --n {n}` (Ray {result['ray_version']}, {cores} CPU cores, one machine;
{n:,} generated 32x32 PNGs scored by the shipped `cifake`; best of {result['repeats']}; every time is a whole
command, start-up included). The fixed cost is the same command on {TINY} images; the marginal rate
is (n - {TINY}) / (time on n - fixed cost). The machine was shared: load average
{result['load_average_before']:.1f} before and {result['load_average_after']:.1f} after, on {cores} cores, so
these times are what other work left to the commands, not the machine's best.

| engine | fixed cost (s) | {n:,} images (s) | img/s | marginal img/s | ray / local |
| --- | --- | --- | --- | --- | --- |
{line.format(name="local (`--format jsonl`)", ratio="1.00x", **local)}
{line.format(name="ray, own local instance", ratio=ratio(r), **r)}
{line.format(name="ray, joining a running instance (`--ray-address`)", ratio=ratio(j), **j)}

Records against the local engine's: the same order, and every field equal in every record but the
float scores, which are bit-identical in {min(a['identical'] for a in agreement.values()):,} of {n:,} records and at most
{worst['max_abs_dp_fake']:.1e} apart in p_fake ({worst['max_abs_dlogit']:.1e} in the logit) in the others: the
images that went through a forward pass of another size (the actors' batches do not fall where the
local run's do, and oneDNN's float32 result for one image depends on the size of its pass).

On one machine Ray adds fixed costs (its instance, then actors that each import torch and load the
bundles) and per-batch hand-overs through the object store; the marginal rate differs also because
the work splits differently: two single-threaded actors that each decode and score, against one
process with two torch threads that decodes inline. What more machines give is reasoning, not
measurement: docs/SCALING.md.
"""
    write_section("RESULTS.md", "ray-detect", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="write the docs section from a run's printed JSON instead of measuring")
    args = ap.parse_args()

    result = json.loads(args.from_json.read_text()) if args.from_json else measure(args.n, args.repeats)
    print(json.dumps(result, indent=2))
    agreement = result["agreement_with_local"]
    if not all(a["same_order"] and a["equal_but_floats"] and a["max_abs_dp_fake"] < 1e-5 for a in agreement.values()):
        raise SystemExit(f"the engines' records differ beyond float32 rounding: {agreement}")
    if not args.no_docs:
        write_docs(result)


if __name__ == "__main__":
    main()
