"""What the benchmark scripts share: paths, marked sections of docs/ files, the JSON store of the
report scripts, and the timing helpers of the speed benchmarks.

The scripts import it as `_common` (Python puts a script's own folder first on sys.path); no
script imports another script.
"""

from __future__ import annotations

import json
import re
import time
from itertools import repeat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS_TITLE = "# Results\n\nWritten by the scripts in `benchmarks/`; each section names its command.\n"


# ---------------------------------------------------------------------------------------- docs
def section_markers(key: str) -> tuple[str, str]:
    return f"<!-- {key}:start -->", f"<!-- {key}:end -->"


def section_block(key: str, body: str) -> str:
    """`body` between the section's start and end markers."""
    start, end = section_markers(key)
    return f"{start}\n{body.rstrip()}\n{end}"


def write_section(file: str | Path, key: str, body: str, title: str = RESULTS_TITLE) -> Path:
    """Write one marked section of a Markdown file, leaving the other sections alone.

    `file` is relative to docs/ (an absolute path is used as it is); a new file starts with `title`."""
    path = DOCS / file
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else title
    start, end = section_markers(key)
    block = section_block(key, body)
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def photo_like(side: int, seed: int, noise: float = 6.0):
    """Photo-like RGB pixels: smooth colour gradients plus sensor-like noise of sd `noise` (uint8, side x side)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    phase = rng.uniform(0, 6, 3)
    base = np.stack([120 + 80 * np.sin(3 * xx + phase[0]), 110 + 70 * np.cos(2 * yy + phase[1]),
                     100 + 60 * np.sin(2 * xx + 3 * yy + phase[2])], -1)
    return np.clip(base + rng.normal(0, noise, (side, side, 3)), 0, 255).astype(np.uint8)


def cifake_like_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """32x32 JPEGs with smooth content and sensor-like noise: the size and format of CIFAKE files.

    Their verdicts do not matter here; only what it costs to receive, decode and score them.
    """
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 32.0
    out = []
    for _ in range(n):
        base = np.stack([np.sin(x * rng.uniform(1, 6) + rng.uniform(0, 6)), np.cos(y * rng.uniform(1, 6)),
                         np.sin((x + y) * rng.uniform(1, 4))], -1)
        img = np.clip(127 + 100 * base + rng.normal(0, 6, (32, 32, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=int(rng.integers(75, 96)))
        out.append(buf.getvalue())
    return out


def stop_server(server, timeout: float = 30) -> int:
    """Stop a `realjudge serve` subprocess: SIGTERM, then SIGKILL after `timeout` s; its exit code."""
    import subprocess

    server.terminate()
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


# ---------------------------------------------------------------------------------------- store
def save_json(out: Path, name: str, data) -> None:
    """The JSON file a report script keeps one step's measurements in (one file a step, under its run folder)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=float))


def load_json(out: Path, name: str):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


# ---------------------------------------------------------------------------------------- timing
def best_of(repeats: int, fn) -> float:
    """The shortest of `repeats` timings of `fn()`, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


MAX_PIXELS = 64_000_000


def measure(det, samples, workers: int, repeats: int) -> dict:
    """Images per second of `detect` on `samples` against two floors, each with the machine to itself:

    - decode floor: reading + decoding + provenance + the bundle's input policy alone
      (`realjudge.pipeline.prepare`), in `workers` processes;
    - model floor: the model's forward pass alone on the already-decoded views;
    - detect: the whole pipeline (`Router.predict_samples`, decoding processes chosen automatically)."""
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from realjudge.pipeline import prepare
    from realjudge.router import Router

    router = Router.single(det)
    n = len(samples)
    names = [s.locator for s in samples]

    def decode_only():
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(prepare, samples, names, repeat(router), repeat(MAX_PIXELS), repeat(router.provenance),
                              chunksize=64):
                pass

    prepared = [prepare(s, name, router, MAX_PIXELS, router.provenance) for s, name in zip(samples, names)]
    failed = [p.error for p in prepared if p.error is not None]
    if failed:
        raise SystemExit(f"{len(failed)} of {n} images could not be prepared, first: {failed[0]}")
    views = np.concatenate([p.views for p in prepared])

    def model_only():  # every view of every image (mirrored policies score two views per image)
        for i in range(0, len(views), 256):
            det.logits(views[i:i + 256])

    def pipeline():  # exactly what `realjudge detect` runs: workers chosen automatically
        for _ in router.predict_samples(samples, batch_size=256):
            pass

    t_dec = best_of(repeats, decode_only)
    t_mod = best_of(repeats, model_only)
    t_det = best_of(repeats, pipeline)
    slower = max(t_dec, t_mod)
    return {"decode_floor_ips": n / t_dec, "model_floor_ips": n / t_mod, "detect_ips": n / t_det,
            "ratio_to_slower_floor": t_det / slower, "bound_by": "model" if t_mod >= t_dec else "decoding"}
