"""`realjudge detect --engine ray ... --out FILE`: the local CLI's records, scored on a Ray cluster.

The inputs become a Ray Dataset (`realjudge.ray.read_inputs`), an actor pool scores it
(`realjudge.ray.detect_dataset`), and this process writes the records, in input order, to one
.jsonl file (each line the local `--format jsonl` line) or one .parquet file (the same fields; the
nested `facts`, `provenance` and `warnings` as their JSON text). Errors and warnings reach stderr one
line each, and the exit codes are the local CLI's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
from pathlib import Path

import click

from ..errors import UsageError
from .exit_codes import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE

OUT_KINDS = {".jsonl": "jsonl", ".parquet": "parquet"}


def check_cli_options(out: str | None, fmt_given: bool, explain_dir: str | None, workers: int | None) -> str:
    """The output kind for --out, or a one-line UsageError: all of it before Ray is imported or started."""
    if not out:
        raise UsageError("--engine ray writes its records to a file: pass --out records.parquet or --out records.jsonl")
    suffix = Path(out).suffix.lower()
    if suffix not in OUT_KINDS:
        raise UsageError(f"--out {out}: unknown output suffix {suffix or '(none)'!r}; use .parquet or .jsonl")
    if fmt_given:
        raise UsageError("--format is for --engine local: with --engine ray the suffix of --out names the format")
    if explain_dir:
        raise UsageError("--explain is for --engine local")
    if workers is not None:
        raise UsageError("--workers is for --engine local: with --engine ray decoding runs in the Ray actors")
    return OUT_KINDS[suffix]


def run_ray(paths, out: str, kind: str, address: str | None, model, threshold, batch_size: int, device: str,
            progress: bool | None, verdict_mode: str, provenance: bool, runtime: str = "torch",
            precision: str = "bundle") -> None:
    from ..ray import (
        check_options,
        detect_dataset,
        inputs_dataset,
        list_inputs,
        record_dict,
        record_schema,
        require_ray,
    )

    ray = require_ray()
    # What can be wrong is found before Ray starts: missing paths, the model, the threshold.
    samples, uris, missing = list_inputs(paths)
    for m in missing:
        click.echo(f"realjudge: error: {m}: no such file or folder", err=True)
    if missing and not samples and not uris:
        sys.exit(EXIT_USAGE)
    check_options(model, threshold, verdict_mode, batch_size, provenance, runtime, precision,
                  "cpu" if device == "auto" else device)
    if not samples and not uris:  # empty folders: an empty records file, as the local run prints nothing
        _write(None, Path(out), kind, record_dict, record_schema())
        sys.exit(EXIT_PARTIAL if missing else EXIT_OK)
    show = sys.stderr.isatty() if progress is None else progress
    started = _init(ray, address, show)
    try:
        ds = inputs_dataset(samples, uris)
        records = None if ds is None else detect_dataset(ds, model, threshold, device=device, verdict=verdict_mode,
                                                         provenance=provenance, batch_size=batch_size,
                                                         runtime=runtime, precision=precision)
        failed = _write(records, Path(out), kind, record_dict, record_schema())
    except ray.exceptions.RayActorError as err:
        raise UsageError(f"a Ray actor could not start: {actor_reason(err)}") from None
    finally:
        if started:
            ray.shutdown()
    sys.exit(EXIT_PARTIAL if failed or missing else EXIT_OK)


def _init(ray, address: str | None, show: bool) -> bool:
    """Join the cluster (RAY_ADDRESS or a running one when no address; else a new local instance);
    records in input order; Ray's own progress bars only where ours would show. True: we started it."""
    started = False
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except ConnectionError as err:
            raise UsageError(f"--ray-address {address}: cannot connect ({' '.join(str(err).split())})") from None
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = show
    if not show:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    return started


def actor_reason(err: Exception) -> str:
    """The one line that says why an actor died: Ray's message ends with the error its constructor raised
    (e.g. `UsageError: precision bfloat16: cuda here has no native bfloat16; use float32`)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) nobody answers at is a one-line usage error now, not minutes of
    Ray retrying to reach it."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)", address or "")
    if not m:
        return  # no address, "auto", "local": Ray decides
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout).close()
    except OSError as err:
        raise UsageError(f"--ray-address {address}: nothing answers there ({err.strerror or err})") from None


def _write(records, out: Path, kind: str, record_dict, schema) -> int:
    """Stream the record rows into `out` (through a .partial file, renamed when complete); the number of errors."""
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    batches = () if records is None else records.iter_batches(batch_format="pyarrow", batch_size=None)
    if kind == "parquet":
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(str(partial), schema)
        sink = writer.write_table
        close = writer.close
    else:
        fh = open(partial, "w", encoding="utf-8")
        sink = None
        close = fh.close
    try:
        for batch in batches:
            if sink is not None:
                sink(batch.cast(schema))
            for row in batch.to_pylist():
                rec = record_dict(row)
                if sink is None:
                    fh.write(json.dumps(rec) + "\n")
                failed += rec["error"] is not None
                if rec["error"]:
                    click.echo(f"realjudge: error: {rec['error']}", err=True)
                for w in rec["warnings"]:
                    click.echo(f"realjudge: warning: {rec['path']}: {w}", err=True)
    finally:
        close()
    os.replace(partial, out)
    return failed
