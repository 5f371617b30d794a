"""The `realjudge` command. Thin: parse, call the library, print.

Exit codes: 0 success; 1 some inputs could not be scored (unreadable files, corrupt archives, and
missing paths given beside inputs that exist: each named on its own line on stderr); 2 usage error
(bad option, unknown model, corrupt bundle, no input path exists at all); 3 internal error; 130
interrupted.
"""

from __future__ import annotations

import sys

import click

from ..errors import RealjudgeError
from .exit_codes import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE  # noqa: F401  (importable from realjudge.cli)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RealjudgeError as err:
            click.echo(f"realjudge: error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("realjudge: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            sys.exit(EXIT_OK)
        except Exception as err:  # the last guard: a user never sees a traceback
            reason = " ".join(str(err).split()) or type(err).__name__
            click.echo(f"realjudge: internal error: {type(err).__name__}: {reason} "
                       "(please report it; set REALJUDGE_DEBUG=1 for the traceback)", err=True)
            import os

            if os.environ.get("REALJUDGE_DEBUG"):
                raise
            sys.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="realjudge")
def main() -> None:
    """Tell AI-generated images from real photographs."""


def _register() -> None:
    from . import calibrate, detect, ensemble, evaluate, export, inspect, models, train

    for mod in (detect, inspect, evaluate, train, models, ensemble, calibrate, export):
        main.add_command(mod.command)
    for optional in ("search", "explain", "generate", "serve", "data"):
        try:
            mod = __import__(f"{__name__}.{optional}", fromlist=["command"])
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith(__name__):
                continue
            raise
        main.add_command(mod.command)


_register()
