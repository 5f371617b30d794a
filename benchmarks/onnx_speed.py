"""torch against ONNX Runtime for every shipped detector, in one run, each runtime in a fresh process.

    python benchmarks/onnx_speed.py [--threads 2] [--n-cifake 256] [--n-natural 32] [--latency-cifake 64]
                                    [--latency-natural 16] [--no-docs]

For each shipped detector it first exports the network (`realjudge export NAME --onnx`, into a
temporary REALJUDGE_CACHE, checked against torch), then runs one child process per runtime
(`realjudge.load(NAME, runtime=...)`, `threads` torch and ONNX Runtime threads) that measures:

- detect (img/s): the whole pipeline on JPEG bytes held in memory (decode, provenance, views,
  model, calibration), `batch_size=256` (images gathered until about 256 views, as `realjudge
  detect`), decoding in the same process (workers=0) so that both runtimes get the same cores;
- model step (img/s): `Detector.logits` alone on those images' views, in the batches the pipeline makes;
- latency p50 / p99: `Detector.predict` on one image at a time (what a service request costs);
- peak RSS: the child's high-water mark (VmHWM in /proc/self/status), imports and model included.

Images are generated at each detector's natural size: 32 x 32 for cifake, 1024 x 1024 for natural,
JPEG quality 90 (smooth gradients, texture and noise; 16 distinct images, cycled). The results go
into docs/RESULTS.md (section `onnx-speed`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import write_section

SIZES = {"cifake": 32, "natural": 1024}
BATCH = 256  # `detect --batch-size`'s default: images are gathered until about this many views
DISTINCT = 16


def images(size: int, n: int, seed: int = 0) -> list[bytes]:
    """n JPEG q90 images of size x size (DISTINCT different ones, cycled)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    distinct = []
    for _ in range(min(n, DISTINCT)):
        base = np.stack([np.sin(x * rng.uniform(1, 6) + rng.uniform(0, 6)), np.cos(y * rng.uniform(1, 6)),
                         np.sin((x + y) * rng.uniform(1, 4) + 8 * np.sin(x * rng.uniform(5, 20)))], -1)
        img = 127 + 90 * base + rng.normal(0, 6, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        distinct.append(buf.getvalue())
    return [distinct[i % len(distinct)] for i in range(n)]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------ child
def child(name: str, runtime: str, n: int, latency: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    import realjudge
    from realjudge.pipeline import prepare
    from realjudge.router import Router

    t0 = time.perf_counter()
    det = realjudge.load(name, device="cpu", runtime=runtime)
    load_s = time.perf_counter() - t0
    assert det.runtime == runtime, det
    data = images(SIZES[name], max(n, latency))
    names = [f"img{i:05d}.jpg" for i in range(len(data))]
    det.predict(data[:8], names[:8])  # warm-up

    t = time.perf_counter()
    recs = list(det.predict_iter(zip(data[:n], names[:n]), batch_size=BATCH, workers=0))
    detect_s = time.perf_counter() - t
    assert all(r.error is None for r in recs), recs[0].error

    router = Router.single(det)
    prepared = [prepare(b, nm, router) for b, nm in zip(data[:n], names[:n])]
    batches, pending = [], []
    for p in prepared:  # as the pipeline batches: images until about 256 views
        pending.append(p.views)
        if sum(map(len, pending)) >= BATCH:
            batches.append(np.concatenate(pending))
            pending = []
    batches += [np.concatenate(pending)] if pending else []
    t = time.perf_counter()
    for b in batches:
        det.logits(b)
    model_s = time.perf_counter() - t

    times = []
    for b, nm in zip(data[:latency], names[:latency]):
        t = time.perf_counter()
        det.predict(b)
        times.append(time.perf_counter() - t)
    return {"model": name, "runtime": runtime, "threads": threads, "n": n, "latency_n": latency,
            "views_per_image": len(prepared[0].views), "load_s": load_s,
            "detect_ips": n / detect_s, "model_ips": n / model_s,
            "p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3),
            "peak_rss_mb": peak_rss_mb(), "p_fake": [r.p_fake for r in recs[:DISTINCT]]}


# ------------------------------------------------------------------------------------ parent
def run_child(name: str, runtime: str, n: int, latency: int, threads: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", name, runtime, "--n", str(n), "--latency", str(latency),
           "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"{name}/{runtime} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-cifake", type=int, default=256)
    ap.add_argument("--n-natural", type=int, default=32)
    ap.add_argument("--latency-cifake", type=int, default=64, help="single-image calls timed for p50 / p99")
    ap.add_argument("--latency-natural", type=int, default=16)
    ap.add_argument("--latency", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "RUNTIME"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.n, args.latency, args.threads)))
        return

    import onnxruntime
    import torch

    import realjudge
    from realjudge.bundle import shipped_names
    from realjudge.onnx_bundle import export_bundle

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_avg = os.getloadavg()[0]
    rows, exports, autos = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="onnx-speed-") as cache:
        env = os.environ | {"REALJUDGE_CACHE": cache, "OMP_NUM_THREADS": str(args.threads),
                            "MKL_NUM_THREADS": str(args.threads)}
        os.environ["REALJUDGE_CACHE"] = cache
        for name in shipped_names():
            if name not in SIZES:
                continue
            t = time.perf_counter()
            _path, entry = export_bundle(name)
            exports[name] = entry["check"] | {"export_s": time.perf_counter() - t, "opset": entry["opset"]}
            autos[name] = realjudge.load(name, device="cpu", runtime="auto").runtime_note
            n, lat = (args.n_cifake, args.latency_cifake) if name == "cifake" else (args.n_natural, args.latency_natural)
            for runtime in ("torch", "onnx"):
                row = run_child(name, runtime, n, lat, args.threads, env)
                rows.append(row)
                print(f"{name:8} {runtime:6} detect {row['detect_ips']:7.1f} img/s  model {row['model_ips']:7.1f} img/s  "
                      f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  peak RSS {row['peak_rss_mb']:5.0f} MB",
                      flush=True)
            a, b = rows[-2]["p_fake"], rows[-1]["p_fake"]
            exports[name]["p_fake_diff"] = float(np.max(np.abs(np.subtract(a, b))))
            print(f"{name:8} {autos[name]}", flush=True)
    total = time.perf_counter() - started
    load_avg = (load_avg, os.getloadavg()[0])
    body = report(rows, exports, autos, args, total, load_avg, torch.__version__, onnxruntime.__version__)
    print(body)
    if not args.no_docs:
        print(f"wrote {write_section('RESULTS.md', 'onnx-speed', body)}")


def report(rows, exports, autos, args, total, load_avg, torch_v, ort_v) -> str:
    cmd = "python benchmarks/onnx_speed.py" + (
        "" if (args.threads, args.n_cifake, args.n_natural, args.latency_cifake, args.latency_natural) == (2, 256, 32, 64, 16)
        else f" --threads {args.threads} --n-cifake {args.n_cifake} --n-natural {args.n_natural} "
             f"--latency-cifake {args.latency_cifake} --latency-natural {args.latency_natural}")
    lines = [
        "## torch against ONNX Runtime (`detect --runtime onnx`)", "",
        f"Command: `{cmd}` ({total:.0f} s). Every shipped detector, each runtime in a fresh process with "
        f"{args.threads} threads (torch {torch_v}, onnxruntime {ort_v}, CPU); {platform.machine()} machine with "
        f"{os.cpu_count()} cores shared with other work (load average {load_avg[0]:.1f} at the start, "
        f"{load_avg[1]:.1f} at the end), so compare the two runtimes of a detector rather than the absolute "
        "figures with other tables. Generated JPEG q90 images at each "
        "detector's natural size (cifake 32 x 32, natural 1024 x 1024), held in memory. detect: the whole "
        "pipeline at `--batch-size 256` (about 256 views a forward pass), decoding in the same process; model "
        "step: `Detector.logits` alone on those views, in the same batches; latency: one image per call; peak RSS: the child process's high-water mark, imports "
        "included (the onnx runtime also keeps the torch model, for explanations).", "",
        "| detector | views / image | runtime | detect (img/s) | model step (img/s) | latency p50 (ms) | "
        "latency p99 (ms) | peak RSS (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by = {(r["model"], r["runtime"]): r for r in rows}
    for r in rows:
        lines.append(f"| {r['model']} | {r['views_per_image']} | {r['runtime']} | {r['detect_ips']:.1f} | "
                     f"{r['model_ips']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "| detector | n (throughput / latency) | onnx / torch, detect | onnx / torch, model step | "
                  "export (s) | largest \\|logit diff\\| (views) | largest \\|p_fake diff\\| | auto chose |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in exports.items():
        t, o = by[name, "torch"], by[name, "onnx"]
        chose = autos[name].split(":")[0].removeprefix("runtime auto chose ")
        lines.append(f"| {name} | {t['n']} / {t['latency_n']} | {o['detect_ips'] / t['detect_ips']:.2f}x | "
                     f"{o['model_ips'] / t['model_ips']:.2f}x | {e['export_s']:.1f} | "
                     f"{e['max_abs_logit_diff']:.1e} ({e['views']}) | {e['p_fake_diff']:.1e} | {chose} |")
    chose = [f"{v.removeprefix('runtime auto chose ').split(':')[0]} for {k} "
             f"({v.split(': ', 1)[1].split(' on a warm-up')[0]})" for k, v in autos.items()]
    lines += ["", "The export check: both runtimes on the same generated views in batches of 1, 7 and the rest; "
                  "tolerance 1e-4 on the logit. `--runtime auto`, timing both on 64 views at load, chose " +
              " and ".join(chose) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
