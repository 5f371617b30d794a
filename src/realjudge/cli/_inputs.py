"""What `detect` and `explain` share: expand the inputs, report missing ones, load the detectors."""

from __future__ import annotations

import sys

import click

from ..errors import one_line
from .exit_codes import EXIT_USAGE


def open_inputs(paths, model, device, threshold, provenance: bool = True, runtime: str = "torch",
                precision: str = "bundle"):
    """(samples, missing, router). Missing paths are named on stderr and make the exit code 1 when
    other inputs exist (like an unreadable file); when no input exists at all it is a usage error (2)."""
    from ..data.inputs import expand_inputs
    from ..detector import load_for_inputs

    samples, missing = expand_inputs(list(paths))
    for m in missing:
        click.echo(f"realjudge: error: {one_line(m)}: no such file or folder", err=True)
    if missing and not samples:
        sys.exit(EXIT_USAGE)
    router = load_for_inputs(model, device=device, threshold=threshold, provenance=provenance, runtime=runtime,
                             precision=precision)
    for det in router.detectors.values():
        if getattr(det, "runtime_note", ""):  # what `--runtime auto` chose, or a precision fallback
            click.echo(f"realjudge: note: {det.name}: {det.runtime_note}", err=True)
    return samples, missing, router
