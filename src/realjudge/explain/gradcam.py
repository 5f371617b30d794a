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


def cam_layers(model, layer=None) -> list:
    """The layer(s) to explain: the one given, an ensemble's `cam_layers`, or the model's `cam_layer`."""
    if layer is not None:
        return [layer]
    many = getattr(model, "cam_layers", None)
    return list(many) if many else [model.cam_layer]


def _activations_and_grads(model, x: torch.Tensor, sign: torch.Tensor, layer=None):
    """Activations of each CAM layer and the gradients of sum(sign * logit) with respect to them."""
    layers = cam_layers(model, layer)
    store: dict[int, torch.Tensor] = {}

    def hook_for(i):
        def hook(_module, _inputs, output):
            store[i] = output
            # The layer's output often feeds an in-place ReLU; handing a clone downstream keeps the
            # tensor we differentiate against unmodified.
            return output.clone()
        return hook

    handles = [lay.register_forward_hook(hook_for(i)) for i, lay in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # grads flow even when every weight is frozen
            logits = model(x)
            score = (logits * sign.to(logits.dtype)).sum()
            acts = [store[i] for i in range(len(layers))]
            grads = torch.autograd.grad(score, acts)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [a.detach().float() for a in acts], [g.detach().float() for g in grads], logits.detach().float()


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


def _cam(acts, grads, plus: bool, size: int) -> np.ndarray:
    """Weighted activations summed over channels; several layers (an ensemble) are brought to the
    input size and summed before the ReLU and scaling."""
    maps = [(_channel_weights(act, g, plus) * act).sum(1, keepdim=True) for act, g in zip(acts, grads)]
    if len(maps) > 1:
        maps = [F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False) for m in maps]
    return _normalise(torch.stack(maps).sum(0).squeeze(1), size)


def gradcam(model, x: torch.Tensor, sign: torch.Tensor, plus: bool = False, layer=None) -> np.ndarray:
    acts, grads, _ = _activations_and_grads(model, x, sign, layer)
    return _cam(acts, grads, plus, x.shape[-1])


def gradcam_both(model, x: torch.Tensor, sign: torch.Tensor, layer=None) -> dict[str, np.ndarray]:
    """Grad-CAM and Grad-CAM++ from one forward/backward pass (they differ only in the weighting)."""
    acts, grads, _ = _activations_and_grads(model, x, sign, layer)
    return {name: _cam(acts, grads, plus, x.shape[-1]) for name, plus in (("gradcam", False), ("gradcam++", True))}


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
    if not (hasattr(model, "cam_layer") or getattr(model, "cam_layers", None)):
        raise UsageError(f"{type(model).__name__} names no cam_layer; use --method occlusion")
    return gradcam(model, x, sign, plus=method == "gradcam++")
