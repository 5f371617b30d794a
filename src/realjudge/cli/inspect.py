"""`realjudge inspect FILE...`: every provenance finding of each file, in full, without scoring it."""

from __future__ import annotations

import json

import click

from .exit_codes import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file: path, provenance_verdict, findings.")
def command(paths, as_json):
    """Show what each file says about its own origin: C2PA, IPTC/XMP, EXIF, PNG generator chunks,
    the Stable Diffusion watermark, and every reader that failed or hit a limit.

    Metadata can confirm that an image is AI-generated; it never proves one real (docs/PROVENANCE.md).
    Exit code 0 when every file was read, 1 when some could not be, 2 for a usage error.
    """
    import sys

    from ..data.decode import decode_bytes
    from ..data.inputs import expand_inputs
    from ..errors import DecodeError
    from ..provenance import describe, read, verdict

    samples, missing = expand_inputs(list(paths))
    for m in missing:
        click.echo(f"realjudge: error: {m}: no such file or folder", err=True)
    if missing and not samples:
        sys.exit(EXIT_USAGE)
    failed = 0
    for sample in samples:
        try:
            data = sample.read_bytes()
        except DecodeError as err:
            click.echo(f"realjudge: error: {err}", err=True)
            failed += 1
            continue
        try:
            pixels, problem = decode_bytes(data, sample.locator).pixels, None
        except DecodeError as err:  # the metadata of a file whose pixels cannot be decoded is still shown
            pixels, problem = None, err.reason
        findings = [f.to_dict() for f in read(data, pixels)]
        word = verdict(findings)
        if as_json:
            click.echo(json.dumps({"path": sample.locator, "provenance_verdict": word, "pixels": problem or "decoded",
                                   "provenance": findings}))
            continue
        click.echo(f"{sample.locator}: provenance {word}" + (f" (pixels not decoded: {problem})" if problem else ""))
        for f in findings:
            click.echo("  " + describe(f))
        if not findings:
            click.echo("  no provenance metadata (this says nothing either way: most pipelines strip it)")
    sys.exit(EXIT_PARTIAL if failed or missing else EXIT_OK)
