"""A Finding: one signal's claim about a file's origin, how strong it is, and what it rests on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SAYS = ("ai", "ai_edited", "camera", "unknown")
STRENGTHS = ("signed", "signed_untrusted", "claim", "hint")
VERDICTS = ("ai", "camera", "none", "conflict")
DECIDING = ("signed", "signed_untrusted", "claim")
"""Strengths that decide `verdict`; a hint is shown to people but never decides."""

TIME_BUDGET_S = 2.0
"""Wall-clock budget for one file. Checked between readers (a native reader cannot be interrupted
safely); each reader's work is bounded by the byte limits in its own module."""


@dataclass
class Finding:
    signal: str
    says: str
    strength: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failure(signal: str, reason: str) -> Finding:
    """A reader that could not finish: shown, never deciding, never an exception."""
    return Finding(signal, "unknown", "hint", {"error": " ".join(str(reason).split())})
