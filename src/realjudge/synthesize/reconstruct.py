"""Reconstructors: uint8 H x W x 3 pixels in, the same size out, through one autoencoder.

- `DecoderReconstructor`: a decoder trained here (`decoders.py`), loaded from its folder.
- `DiffusersVAE`: a local diffusers `AutoencoderKL` folder (a Stable Diffusion, SDXL or Flux VAE a
  user has on disk); nothing is downloaded (`local_files_only`), and the latent is the posterior's
  mode, so a reconstruction is deterministic.

Large images run in tiles with an overlapping margin, so memory stays bounded whatever the size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError

TILE = 512
MARGIN = 64  # context on each side of a tile; only the tile's centre is kept


def tiled(fn, x: torch.Tensor, factor: int, tile: int = TILE, margin: int = MARGIN) -> torch.Tensor:
    """Apply a size-preserving network to 1 x 3 x H x W in tiles; H and W need not be multiples of `factor`
    (each piece is reflect-padded up to one and cropped back)."""
    _, _, h, w = x.shape
    out = torch.empty_like(x)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            ya, xa = max(0, y0 - margin), max(0, x0 - margin)
            yb, xb = min(h, y1 + margin), min(w, x1 + margin)
            piece = x[..., ya:yb, xa:xb]
            ph, pw = (-piece.shape[-2]) % factor, (-piece.shape[-1]) % factor
            if ph or pw:
                mode = "reflect" if min(piece.shape[-2:]) > max(ph, pw) else "replicate"
                piece = torch.nn.functional.pad(piece, (0, pw, 0, ph), mode=mode)
            rec = fn(piece)[..., :yb - ya, :xb - xa]
            out[..., y0:y1, x0:x1] = rec[..., y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.tensor(pixels).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)  # a copy: decoded pixels are read-only


def _to_pixels(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()


class DecoderReconstructor:
    def __init__(self, folder: str | Path):
        from .decoders import load_decoder

        self.model, self.meta = load_decoder(folder)
        self.name = self.meta["name"]
        self.factor = self.model.spec.factor
        self.info = {"kind": "realjudge-decoder", "folder": str(folder), "spec": self.meta["spec"]}

    @torch.no_grad()
    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return _to_pixels(tiled(self.model, _to_tensor(pixels), self.factor))


class DiffusersVAE:
    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise UsageError(f"{folder}: not a diffusers AutoencoderKL folder (no config.json)")
        try:
            from diffusers import AutoencoderKL
        except ImportError:
            raise UsageError("--vae needs diffusers: pip install 'realjudge[generate]'") from None
        try:
            self.vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True).eval()
        except Exception as err:  # diffusers raises many types for a bad folder; the user gets one line
            raise UsageError(f"{folder}: cannot load the AutoencoderKL ({' '.join(str(err).split())[:200]})") from None
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.name = f"vae-{folder.name}"
        self.info = {"kind": "diffusers-autoencoderkl", "folder": str(folder), "factor": self.factor,
                     "latent_channels": int(self.vae.config.latent_channels)}

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.vae.encode(x).latent_dist.mode()).sample

    @torch.no_grad()
    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return _to_pixels(tiled(self._run, _to_tensor(pixels), self.factor))


def reconstructors(decoders=(), vaes=()) -> list:
    """The decoders named (folders; none named: every shipped decoder) and the VAE folders given."""
    from .decoders import shipped_decoders

    folders = list(decoders) or ([] if vaes else shipped_decoders())
    out = [DecoderReconstructor(f) for f in folders] + [DiffusersVAE(v) for v in vaes]
    if not out:
        raise UsageError("no decoder to reconstruct with: give --decoder DIR or --vae DIR (no shipped decoders found)")
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise UsageError(f"two reconstructors share a name: {', '.join(names)}")
    return out
