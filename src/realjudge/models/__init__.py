"""Detector architectures. Every model maps N x 3 x H x W to N logits (fake positive)."""

from .registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
