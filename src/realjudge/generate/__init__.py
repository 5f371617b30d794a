"""Build CIFAKE-style data sets: fake images from a diffusers text-to-image pipeline (`diffusion`)
and real ones from the official CIFAR-10 archive (`cifar`), both in `OUT/<split>/FAKE|REAL/` with
CIFAKE's file names and one shared `OUT/manifest.csv`.

Nothing here imports diffusers or transformers at import time: they are the optional `generate`
extra, loaded only when a pipeline is.
"""
