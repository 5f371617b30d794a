"""Class lists and prompt templates for text-to-image data sets.

A prompt is chosen per image from the image's own seed, never from a shared random stream: the
same (base seed, class, index) always gives the same prompt, whatever else is generated, resumed or
skipped. Templates vary wording and add modifiers (lighting, viewpoint, background, camera) so that
a class is not one frozen composition, which a detector could learn instead of generator traces.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from ..errors import UsageError

# CIFAR-10's label order, which is also alphabetical: CIFAKE numbers its files in this order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

DEFAULT_TEMPLATES = (
    "a photograph of {a} {cls}",
    "a photo of {a} {cls}, {modifier}",
    "a close-up photo of {a} {cls}, {modifier}",
    "{a} {cls}, {modifier}, {modifier}",
    "a snapshot of {a} {cls}, {modifier}",
    "a real photo of {a} {cls}, {modifier}, {modifier}",
)

# One modifier per group at most in a prompt, so that no prompt says "at night, at noon".
MODIFIER_GROUPS = {
    "lighting": ("in soft morning light", "at golden hour", "on an overcast day", "in bright sunlight",
                 "in dim light", "lit by a camera flash"),
    "viewpoint": ("seen from the side", "seen from the front", "seen from above", "from a low angle",
                  "in the distance", "filling the frame"),
    "background": ("with a blurred background", "against a plain background", "with a cluttered background",
                   "outdoors", "in a natural setting", "in an urban setting"),
    "camera": ("taken with a phone camera", "on 35mm film", "DSLR photo", "slightly out of focus",
               "sharp focus", "candid shot"),
}

_FIELDS = {"cls", "a", "modifier"}


def load_classes(spec: str) -> list[str]:
    """`cifar10`, or a text file with one class name per line (blank lines and `#` comments skipped)."""
    if spec == "cifar10":
        return list(CIFAR10_CLASSES)
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--classes: {spec!r} is neither 'cifar10' nor a file with one class name per line")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise UsageError(f"--classes: {spec} holds no class names")
    seen = set()
    for n in names:
        if n in seen:
            raise UsageError(f"--classes: {spec} names {n!r} twice")
        seen.add(n)
    return names


def check_template(template: str, where: str) -> str:
    """A template must name `{cls}` and may use `{a}` (a/an) and `{modifier}`; `{{` and `}}` are literal braces."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise UsageError(f"{where}: bad template {template!r}: {err}") from None
    unknown = sorted({f for f in fields if f not in _FIELDS})
    if unknown:
        raise UsageError(f"{where}: template {template!r} uses {{{unknown[0]}}}; known fields: {{cls}}, {{a}}, {{modifier}}")
    if "cls" not in fields:
        raise UsageError(f"{where}: template {template!r} must contain {{cls}}")
    if fields.count("modifier") > len(MODIFIER_GROUPS):
        raise UsageError(f"{where}: template {template!r} uses {{modifier}} more than {len(MODIFIER_GROUPS)} times")
    return template


def load_templates(path: str | None) -> list[str]:
    """The default templates, or one template per line of a file (blank lines and `#` comments skipped)."""
    if path is None:
        return list(DEFAULT_TEMPLATES)
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--prompts: no file {path}")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    templates = [check_template(t, f"--prompts {path} line {i}") for i, t in enumerate(lines, 1)
                 if t and not t.startswith("#")]
    if not templates:
        raise UsageError(f"--prompts: {path} holds no templates")
    return templates


def article(word: str) -> str:
    """'an' before a vowel letter, else 'a' (a spelling heuristic: 'an hour' and 'a unicorn' are missed)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def compose_prompt(templates: list[str], cls: str, seed: int) -> str:
    """The prompt of the image with this seed: template and modifiers drawn from the seed alone."""
    rng = random.Random(seed)
    template = templates[rng.randrange(len(templates))]
    n_mod = sum(1 for _, f, _, _ in string.Formatter().parse(template) if f == "modifier")
    groups = rng.sample(sorted(MODIFIER_GROUPS), n_mod)
    modifiers = iter(rng.choice(MODIFIER_GROUPS[g]) for g in groups)
    out = []
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if field == "cls":
            out.append(cls)
        elif field == "a":
            out.append(article(cls))
        elif field == "modifier":
            out.append(next(modifiers))
    return "".join(out)
