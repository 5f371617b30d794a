"""Class-activation maps for any registered CNN: Grad-CAM, Grad-CAM++ and occlusion.

Every function takes a normalised batch `N x 3 x S x S` and a target sign per image (+1 explains
"fake", -1 explains "real": a model has one logit, so the evidence for "real" is the evidence
against "fake") and returns `N x S x S` float32 maps in [0, 1] at the model's input resolution.

Grad-CAM (Selvaraju et al. 2017): weights = spatial mean of d(score)/dA per channel of the
activations A of the model's `cam_layer`; map = ReLU(sum_k w_k A_k).
Grad-CAM++ (Chattopadhay et al. 2018): pixel-wise weights
alpha = g^2 / (2 g^2 + sum_ab A g^3), w_k = sum_ab alpha ReLU(g), which credits several
separate regions of evidence instead of the largest one.
Occlusion (Zeiler & Fergus 2014): the drop of the score when a grey square hides a patch; it needs
no gradients or layer, so it cross-checks the two gradient methods.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

GRADIENT_METHODS = ("gradcam", "gradcam++")
METHODS = GRADIENT_METHODS + ("occlusion",)


def _activations_and_grads(model, x: torch.Tensor, sign: torch.Tensor, layer=None):
    """Activations of the CAM layer and the gradients of sum(sign * logit) with respect to them."""
    layer = layer if layer is not None else model.cam_layer
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["act"] = output
        # The layer's output often feeds an in-place ReLU; handing a clone downstream keeps the
        # tensor we differentiate against unmodified.
        return output.clone()

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # grads flow even when every weight is frozen
            logits = model(x)
            score = (logits * sign.to(logits.dtype)).sum()
            (grads,) = torch.autograd.grad(score, store["act"])
    finally:
        handle.remove()
        model.train(was_training)
    return store["act"].detach().float(), grads.detach().float(), logits.detach().float()


def _normalise(cams: torch.Tensor, size: int) -> np.ndarray:
    """ReLU, bilinear upsampling to the input size, then each map scaled to max 1 (all-zero stays zero)."""
    cams = F.relu(cams).unsqueeze(1)
    if cams.shape[-1] != size or cams.shape[-2] != size:
        cams = F.interpolate(cams, size=(size, size), mode="bilinear", align_corners=False)
    cams = F.relu(cams.squeeze(1))
    peak = cams.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    out = (cams / peak).clamp_(0, 1)
    return out.cpu().numpy().astype(np.float32)


def _channel_weights(act: torch.Tensor, g: torch.Tensor, plus: bool) -> torch.Tensor:
    if not plus:
        return g.mean(dim=(2, 3), keepdim=True)
    g2, g3 = g.pow(2), g.pow(3)
    denom = 2 * g2 + (act * g3).sum(dim=(2, 3), keepdim=True)
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    return (alpha * F.relu(g)).sum(dim=(2, 3), keepdim=True)


def gradcam(model, x: torch.Tensor, sign: torch.Tensor, plus: bool = False, layer=None) -> np.ndarray:
    act, g, _ = _activations_and_grads(model, x, sign, layer)
    return _normalise((_channel_weights(act, g, plus) * act).sum(1), x.shape[-1])


def gradcam_both(model, x: torch.Tensor, sign: torch.Tensor, layer=None) -> dict[str, np.ndarray]:
    """Grad-CAM and Grad-CAM++ from one forward/backward pass (they differ only in the weighting)."""
    act, g, _ = _activations_and_grads(model, x, sign, layer)
    return {name: _normalise((_channel_weights(act, g, plus) * act).sum(1), x.shape[-1])
            for name, plus in (("gradcam", False), ("gradcam++", True))}


def occlusion(model, x: torch.Tensor, sign: torch.Tensor, patch: int | None = None, stride: int | None = None,
              batch_size: int = 512) -> np.ndarray:
    """Score drop when a patch is replaced by the normalised mean (0), averaged over the patches covering each pixel."""
    n, _, h, w = x.shape
    patch = patch or max(2, min(h, w) // 8)
    stride = stride or max(1, patch // 2)
    ys = list(range(0, max(1, h - patch + 1), stride))
    xs = list(range(0, max(1, w - patch + 1), stride))
    if ys[-1] != h - patch:
        ys.append(max(0, h - patch))
    if xs[-1] != w - patch:
        xs.append(max(0, w - patch))
    positions = [(y, xx) for y in ys for xx in xs]
    was_training = model.training
    model.eval()
    maps = torch.zeros(n, h, w)
    counts = torch.zeros(h, w)
    for y, xx in positions:
        counts[y:y + patch, xx:xx + patch] += 1
    try:
        with torch.inference_mode():
            base = model(x).float() * sign
            for i in range(n):
                drops = []
                for j in range(0, len(positions), batch_size):
                    chunk = positions[j:j + batch_size]
                    masked = x[i:i + 1].repeat(len(chunk), 1, 1, 1)
                    for k, (y, xx) in enumerate(chunk):
                        masked[k, :, y:y + patch, xx:xx + patch] = 0
                    drops.append(base[i] - model(masked).float() * sign[i])
                for (y, xx), d in zip(positions, torch.cat(drops).cpu()):
                    maps[i, y:y + patch, xx:xx + patch] += d
    finally:
        model.train(was_training)
    return _normalise(maps / counts.clamp_min(1), h)


def class_maps(model, x: torch.Tensor, sign: torch.Tensor | np.ndarray, method: str = "gradcam") -> np.ndarray:
    """`N x S x S` maps in [0, 1] for the method named; `sign` +1 explains fake, -1 real."""
    from ..errors import UsageError

    if method not in METHODS:
        raise UsageError(f"unknown explanation method {method!r}; known: {', '.join(METHODS)}")
    sign = torch.as_tensor(np.asarray(sign, np.float32)).to(x.device).view(-1)
    if method == "occlusion":
        return occlusion(model, x, sign)
    if not hasattr(model, "cam_layer"):
        raise UsageError(f"{type(model).__name__} names no cam_layer; use --method occlusion")
    return gradcam(model, x, sign, plus=method == "gradcam++")
