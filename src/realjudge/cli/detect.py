"""`realjudge detect PATH...`: score files, folders, globs and archives."""

from __future__ import annotations

import csv
import io
import json
import sys

import click

from ..errors import UsageError, one_line
from .options import precision_option, runtime_option, threshold_option
from .exit_codes import EXIT_OK, EXIT_PARTIAL


def format_records(records, fmt: str) -> str:
    """Records as a table, JSON, JSON Lines or CSV (the same fields in each)."""
    from ..detector import RECORD_FIELDS as fields

    rows = [r.to_dict() for r in records]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        # A CSV cell holds one value: the findings travel as JSON text in their column.
        w.writerows(r | {"provenance": None if r["provenance"] is None else json.dumps(r["provenance"]),
                         "warnings": "; ".join(r["warnings"])} for r in rows)
        return buf.getvalue()
    return "".join(table_line(r) + "\n" for r in records)


TABLE_HEADER = f"{'verdict':<9}  {'p_fake':>6}  {'provenance':<22}  path  [model]"


def table_line(r) -> str:
    from ..provenance import short

    origin = short(r.provenance, r.provenance_verdict)
    if r.error:
        return f"{'error':<9}  {'':>6}  {origin:<22}  {r.path}  ({r.error.removeprefix(r.path + ': ')})"
    overridden = "*" if r.verdict_source == "provenance" else ""
    return f"{r.verdict + overridden:<9}  {r.p_fake:6.4f}  {origin:<22}  {r.path}  [{r.model}]"


@click.command("detect")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "-m", default=None, help="Shipped detector name or bundle path (default: picked by image size).")
@threshold_option("Decision threshold on p_fake (default: the bundle's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default="table", show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=256, show_default=True)
@click.option("--workers", type=click.IntRange(0, 64), default=None, help="Decoding processes (0: decode in the main process).")
@click.option("--device", default="auto", show_default=True)
@runtime_option()
@precision_option()
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--explain", "explain_dir", type=click.Path(file_okay=False), default=None,
              help="Write a Grad-CAM overlay PNG per scored file into this folder.")
@click.option("--verdict", "verdict_mode", type=click.Choice(["pixels", "combined"]), default="pixels", show_default=True,
              help="combined: strong provenance (C2PA, generator chunks, IPTC) overrides the pixel verdict, marked * and "
                   "verdict_source=provenance.")
@click.option("--provenance/--no-provenance", default=True, show_default=True,
              help="Read C2PA, XMP, EXIF, PNG chunks and the SD watermark beside the pixel score.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: score on a Ray cluster, decoding in its actors, records to --out "
                   "(needs pip install 'realjudge[ray]'); inputs may also be s3:// or gs:// paths there.")
@click.option("--ray-address", default=None,
              help="--engine ray: the cluster to join (default: RAY_ADDRESS, a running local cluster, or a new local one).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="--engine ray: the records file, records.parquet or records.jsonl.")
def command(paths, model, threshold, fmt, batch_size, workers, device, runtime, precision, progress, explain_dir,
            verdict_mode, provenance, engine, ray_address, out):
    """Score images: files, folders (recursive), globs and archives.

    The table's third column is the file's provenance: its one-word verdict (ai, camera, none,
    conflict) and the signals that decided it; `realjudge inspect FILE` shows every finding.
    Exit code 0 when every file was scored, 1 when some could not be read or some paths do not exist
    (the rest are scored), 2 for a usage error or when no path exists. Errors and warnings go to stderr.

    With --engine ray the same records are scored on a Ray cluster and written to --out (.parquet or
    .jsonl), in input order.
    """
    if engine == "ray":
        from .detect_ray import check_cli_options, run_ray

        fmt_given = click.get_current_context().get_parameter_source("fmt") is click.core.ParameterSource.COMMANDLINE
        kind = check_cli_options(out, fmt_given, explain_dir, workers)
        return run_ray(paths, out, kind, ray_address, model, threshold, batch_size, device, progress, verdict_mode,
                       provenance, runtime, precision)
    if out or ray_address:
        raise UsageError(f"{'--out' if out else '--ray-address'} is for --engine ray "
                         "(with --engine local, --format jsonl writes records to stdout)")
    from tqdm import tqdm

    from ._inputs import open_inputs

    samples, missing, router = open_inputs(paths, model, device, threshold, provenance, runtime, precision)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(samples), disable=not show, unit="img", file=sys.stderr, desc="detect")
    failed = 0
    counts = {"fake": 0, "real": 0, "uncertain": 0}
    first = True
    explainer = None
    if explain_dir:
        from ..explain.writer import OverlayWriter

        explainer = OverlayWriter(explain_dir)
    out = sys.stdout
    if fmt == "json":
        out.write("[")
    elif fmt == "table":
        out.write(TABLE_HEADER + "\n")
    scored = router.predict_samples(samples, batch_size=batch_size, workers=workers, verdict=verdict_mode,
                                    keep_pixels=explainer is not None)
    for item in scored:
        rec, prepared = item if explainer is not None else (item, None)
        bar.update(1)
        failed += rec.error is not None
        if rec.verdict:
            counts[rec.verdict] += 1
        if rec.error or rec.warnings:  # errors and warnings reach stderr in every format, one line each
            if show:
                bar.clear()
            if rec.error:
                click.echo(f"realjudge: error: {rec.error}", err=True)
            for w in rec.warnings:
                click.echo(f"realjudge: warning: {one_line(rec.path)}: {w}", err=True)
        if explainer is not None and rec.error is None:
            explainer.write(router, rec, prepared)
        if fmt == "json":
            out.write(("\n  " if first else ",\n  ") + json.dumps(rec.to_dict()))
        elif fmt == "csv":
            text = format_records([rec], "csv")
            out.write(text if first else text.split("\n", 1)[1])
        else:
            out.write(format_records([rec], fmt))
        first = False
    if fmt == "json":
        out.write("\n]\n")
    out.flush()
    bar.close()
    if fmt == "table" and sys.stderr.isatty():
        click.echo(f"{sum(counts.values())} scored: {counts['fake']} fake, {counts['real']} real, "
                   f"{counts['uncertain']} uncertain; {failed} unreadable", err=True)
    sys.exit(EXIT_PARTIAL if failed or missing else EXIT_OK)
