"""Model registry, in the manner of timm: `@register_model("name")` on a builder function.

Each entry knows its default input policy; `create_model(name, **kwargs)` validates the kwargs
against the builder's signature so that a typo fails early with a clear message.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UsageError
from ..preprocess import InputPolicy


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., Any]
    policy: InputPolicy
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, policy: InputPolicy | None = None, description: str = ""):
    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, fn, policy or InputPolicy(), description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, **kwargs):
    entry = get_entry(name)
    params = inspect.signature(entry.builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UsageError(f"{name}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(params)}")
    try:
        return entry.builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{name}: {err}") from None


def architecture_only(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` for building a model whose weights are loaded right after (a bundle, an ensemble's
    members): `pretrained` off, because the loaded weights replace any ImageNet initialisation, so
    loading it would cost time and need the 17 MB weights package for nothing."""
    if "pretrained" not in inspect.signature(get_entry(name).builder).parameters:
        return dict(kwargs)
    return kwargs | {"pretrained": False}
