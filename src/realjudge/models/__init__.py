"""Detector architectures. Every model maps N x 3 x H x W to N logits (fake positive).

The registry is a leaf; importing this package registers every family (as timm does), and any
import of a `realjudge.models` submodule runs this file first, so the registry is always full."""

from . import cifake_cnn, cnnspot, efficientnet, npr, ntf, resnet, stack  # noqa: F401  (registration)
from .registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
