"""Batch norm folded into the convolution before it, for inference.

In eval mode a BatchNorm2d after a Conv2d is an affine map per output channel, so it can be
written into the convolution's weights and bias: one pass over the activations fewer per layer,
which on a CPU is a large share of a small network's time at 32x32. The pairs are found in the
torch.fx graph of the model (only where the convolution's output feeds the batch norm alone), as
torch.fx.experimental.optimization.fuse does; that module is not used because importing it costs
over a second of start-up. The folded copy computes the same function to float32 rounding, and the
original stays untouched for training and explanations.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

FOLD_TOLERANCE = 1e-4  # float32 rounding differs by ~1e-6 here; a wrong fold by far more


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _fuse(model: nn.Module) -> torch.fx.GraphModule:
    """`model` (eval mode) traced, each conv -> batch norm pair replaced by one folded convolution."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if not (isinstance(modules.get(node.target), nn.BatchNorm2d) and isinstance(conv, torch.fx.Node)
                and conv.op == "call_module" and isinstance(modules.get(conv.target), nn.Conv2d)
                and len(conv.users) == 1 and modules[node.target].track_running_stats):
            continue
        parent, _, name = conv.target.rpartition(".")
        fused = fuse_conv_bn_eval(modules[conv.target], modules[node.target])
        setattr(traced.get_submodule(parent) if parent else traced, name, fused)
        modules[conv.target] = fused
        node.replace_all_uses_with(conv)
        traced.graph.erase_node(node)
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """An eval-mode copy of `model` with its conv -> batch-norm pairs folded, or `model` itself when
    nothing folds, when it cannot be copied or traced (a wrapper holding locks, data-dependent control
    flow), or when the copy's logits on `example` differ by more than FOLD_TOLERANCE."""
    before = _batch_norms(model)
    if not before:
        return model
    try:
        folded = _fuse(copy.deepcopy(model).eval())
    except Exception:  # tracing raises whatever the model's own code raises on a proxy
        return model
    if _batch_norms(folded) == before:
        return model
    with torch.inference_mode():
        same = torch.allclose(model.eval()(example), folded(example), atol=FOLD_TOLERANCE, rtol=0)
    return folded if same else model
