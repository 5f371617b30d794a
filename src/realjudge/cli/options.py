"""Options several commands share, validated by the library's own rules (one rule, one place)."""

from __future__ import annotations

import click

from ..calibrate import check_threshold
from ..errors import UsageError


class Threshold(click.ParamType):
    """A decision threshold on p_fake, checked by `realjudge.calibrate.check_threshold`."""

    name = "threshold"

    def convert(self, value, param, ctx):
        try:
            return check_threshold(value)
        except UsageError as err:
            self.fail(str(err), param, ctx)


def threshold_option(help: str = "Decision threshold on p_fake in [0, 1] (default: the bundle's)."):
    return click.option("--threshold", "-t", type=Threshold(), default=None, help=help)
