"""Options several commands share, validated by the library's own rules (one rule, one place)."""

from __future__ import annotations

import click

from ..calibrate import check_threshold
from ..errors import UsageError
from ..onnx_bundle import RUNTIMES
from ..precision import CHOICES as PRECISION_CHOICES


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


def runtime_option():
    """`--runtime torch|onnx|auto`: which runtime the model step runs on (realjudge.detector.load)."""
    return click.option("--runtime", type=click.Choice(RUNTIMES), default="torch", show_default=True,
                        help="The model step: torch; onnx (ONNX Runtime on the CPU: the bundle's model.onnx, else an "
                             "export made on the fly into the cache; needs the onnx extra); or auto (times both at "
                             "load, keeps the faster and says which on stderr). The records are the same.")


def precision_option():
    """`--precision bundle|float32|bfloat16`: the torch model step's number format (realjudge.precision)."""
    return click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="bundle", show_default=True,
                        help="The torch model step's number format: the one the bundle's calibration was fitted at "
                             "(float32 where this hardware lacks native bfloat16, with a note), or float32 or bfloat16.")


def card_option():
    """`--card FILE`: the model card's hand-written text (realjudge.card.CARD_FIELDS) from a JSON file."""
    return click.option("--card", "card_file", type=click.Path(dir_okay=False),
                        help="JSON file with the model card's intended_input, failure_modes and notes.")


def read_card(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    from ..card import check_card
    from ..train.config import read_json_object

    return check_card(read_json_object(path, "card"), path)
