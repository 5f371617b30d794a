"""Small autoencoders whose decoders upsample the way generators do.

Generators differ in how their decoders go from a latent grid back to pixels, and each way leaves
its own periodic trace: nearest-neighbour + conv (LDM / Stable Diffusion / Flux VAEs), transposed
convolution (most GANs), pixel shuffle (sub-pixel convolution, ESRGAN-style and some GANs),
bilinear + conv (StyleGAN-like smooth upsampling). `AutoEncoder(upsample, factor, latent)` builds
one of them: `factor` = 4 or 8 (downsampling of the latent grid), `latent` = 4..16 channels.

A trained decoder is a folder: `model.safetensors` (weights only) + `decoder.json` (the spec and
its measured quality), loaded by `load_decoder` without running any code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError

UPSAMPLERS = ("nearest", "transposed", "shuffle", "bilinear")


@dataclass(frozen=True)
class DecoderSpec:
    upsample: str
    factor: int = 4
    latent: int = 8
    width: int = 16  # channels at full resolution

    def __post_init__(self):
        if self.upsample not in UPSAMPLERS:
            raise UsageError(f"upsample must be one of {', '.join(UPSAMPLERS)}, got {self.upsample!r}")
        if self.factor not in (2, 4, 8):
            raise UsageError(f"factor must be 2, 4 or 8, got {self.factor}")
        if not 1 <= self.latent <= 64:
            raise UsageError(f"latent channels must be 1..64, got {self.latent}")

    @property
    def name(self) -> str:
        return f"ae-{self.upsample}-f{self.factor}c{self.latent}"


# The decoders shipped for `realjudge data synthesize`: every upsampler, 4x and 8x down, 16 latent
# channels. Decoders this small, trained for minutes on a CPU, are blurry and lossy (their
# decoder.json records PSNR and sharpness); 16 channels is the most the range allows, and keeps
# the most detail.
SHIPPED_SPECS = (
    DecoderSpec("nearest", 4, 16),
    DecoderSpec("transposed", 4, 16),
    DecoderSpec("shuffle", 4, 16),
    DecoderSpec("bilinear", 4, 16),
    DecoderSpec("nearest", 8, 16),
    DecoderSpec("transposed", 8, 16),
)


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.SiLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def _up(kind: str, c: int) -> nn.Module:
    if kind == "nearest":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1))
    if kind == "bilinear":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(c, c, 3, padding=1))
    if kind == "transposed":
        return nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)
    return nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2))


class AutoEncoder(nn.Module):
    """x in [-1, 1] -> latent grid (H/f x W/f x latent) -> x_hat, same size (H, W multiples of f).

    Channels grow toward the coarse levels (`width` at full resolution, doubling per level up to 4x)
    and residual blocks sit below full resolution, so a 512-px photograph reconstructs in a fraction
    of a second on a CPU; the last upsampling layer writes the full-resolution pixels, as in the
    generators whose trace it imitates."""

    def __init__(self, spec: DecoderSpec):
        super().__init__()
        self.spec = spec
        n = int(math.log2(spec.factor))
        w = [min(4 * spec.width, spec.width * 2 ** i) for i in range(n + 1)]  # channels per level, full resolution first
        enc: list[nn.Module] = []
        for i in range(n):
            enc += [nn.Conv2d(3 if i == 0 else w[i], w[i + 1], 4, stride=2, padding=1), nn.SiLU(inplace=True), _Res(w[i + 1])]
        enc += [nn.Conv2d(w[n], spec.latent, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(spec.latent, w[n], 3, padding=1), _Res(w[n])]
        for i in range(n, 0, -1):
            dec += [_up(spec.upsample, w[i]), nn.Conv2d(w[i], w[i - 1], 1), nn.SiLU(inplace=True)]
            if i > 1:
                dec.append(_Res(w[i - 1]))
        dec += [nn.Conv2d(w[0], w[0], 3, padding=1), nn.SiLU(inplace=True), nn.Conv2d(w[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def save_decoder(model: AutoEncoder, folder: str | Path, info: dict) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # float16 on disk halves what ships; reconstruction runs in float32 (`load_decoder`).
    save_file({k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    meta = {"format_version": 1, "name": model.spec.name, "spec": asdict(model.spec)} | info
    (folder / "decoder.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(decoder_card(meta))
    return folder


def decoder_card(meta: dict) -> str:
    sp, t, v = meta["spec"], meta.get("training", {}), meta.get("validation", {})
    return f"""# {meta['name']}

An autoencoder whose decoder upsamples by **{sp['upsample']}** ({UPSAMPLE_NOTES[sp['upsample']]}), {sp['factor']}x down
to a latent grid of {sp['latent']} channels, {sp['width']} channels at full resolution. It exists to make fakes from real
photographs (`realjudge data synthesize`): the reconstruction keeps the photograph's content and carries this
decoder's upsampling trace. It is not a generator and was never trained to produce images from noise.

## Training
{t.get('steps', '?')} Adam steps (one-cycle, peak lr {t.get('lr', '?')}) on batches of {t.get('batch', '?')} random
{t.get('patch', '?')}-px patches (never resampled) of {t.get('n_real_images', '?')} real photographs; loss L1 on pixels +
{t.get('lambda_laplacian', '?')} x L1 on Laplacians + {t.get('lambda_energy', 0)} x L1 on local high-frequency energy.
{t.get('seconds', '?')} s on the machine that trained it.

## Quality (held-out patches of held-out photographs)
- PSNR {v.get('psnr_db', '?')} dB
- sharpness ratio {v.get('sharpness_ratio', '?')} (mean |Laplacian| of the reconstruction over the photograph's; 1.0 = as sharp)

## Limits
Small and trained for minutes on a CPU: reconstructions are softer than a large VAE's and lose fine detail. Pair
them with sharpness-matched real copies (`data synthesize` does by default) so that a detector cannot learn blur
instead of the upsampling trace. Weights are float16 `model.safetensors`; `decoder.json` holds the spec.
"""


UPSAMPLE_NOTES = {"nearest": "nearest-neighbour + conv, as in LDM / Stable Diffusion / Flux VAEs",
                  "transposed": "transposed convolution, as in most GANs",
                  "shuffle": "pixel shuffle / sub-pixel convolution",
                  "bilinear": "bilinear + conv, smooth upsampling"}


def load_decoder(folder: str | Path) -> tuple[AutoEncoder, dict]:
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path, weights = folder / "decoder.json", folder / "model.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise UsageError(f"{folder}: not a decoder folder (needs decoder.json and model.safetensors)")
    try:
        meta = json.loads(meta_path.read_text())
        model = AutoEncoder(DecoderSpec(**meta["spec"]))
        model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    except Exception as err:  # bad JSON, a bad spec, a corrupt safetensors file (its own error type), mismatched weights
        raise UsageError(f"{folder}: corrupt decoder ({' '.join(str(err).split())[:200]})") from None
    return model.eval(), meta


def shipped_decoders_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "shipped" / "decoders"


def shipped_decoders() -> list[Path]:
    root = shipped_decoders_dir()
    return sorted(p for p in root.iterdir() if (p / "decoder.json").is_file()) if root.is_dir() else []
