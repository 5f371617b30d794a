"""Pick the right detector for each input by its size.

With no `--model`, small images (both sides at most `SMALL_SIDE` pixels, CIFAKE-like) go to the
shipped `cifake` detector and larger ones to the shipped natural-resolution detector when one is
installed; every record names the model that scored it. A Router over one detector sends every
image to it. Scoring itself is `realjudge.pipeline`; the Router only holds the detectors and the rule.
"""

from __future__ import annotations

from typing import Any

from . import pipeline
from .data.decode import DEFAULT_MAX_PIXELS

SMALL_SIDE = 64
SMALL_MODEL, NATURAL_MODEL = "cifake", "natural"


class Router:
    def __init__(self, detectors: dict, small: str, large: str, provenance: bool = True):
        self.detectors = detectors
        self.small, self.large = small, large
        self.provenance = provenance

    @classmethod
    def single(cls, detector, provenance: bool = True) -> "Router":
        """Every image to this one detector."""
        return cls({detector.name: detector}, detector.name, detector.name, provenance)

    def only(self, name: str) -> "Router":
        """The same detector objects, every image sent to `name`."""
        return Router({name: self.detectors[name]}, name, name, self.provenance)

    def route(self, width: int, height: int) -> str:
        """The size rule, the one place it is written: the name of the detector for an image this size."""
        return self.small if max(width, height) <= SMALL_SIDE else self.large

    def pick(self, width: int, height: int):
        return self.detectors[self.route(width, height)]

    def size_warnings(self, model: str, width: int, height: int) -> list[str]:
        """Why a verdict deserves less trust because of the image's size: a photograph resized for a small-image model."""
        policy = self.detectors[model].policy
        if policy.kind == "resize" and max(width, height) > SMALL_SIDE:
            s = policy.size
            return [f"{model} judges {s}x{s} images: this {width}x{height} image was resized to {s}x{s}, which erases "
                    f"the traces it looks for; its verdict on a larger image is not reliable (leave the model unset to "
                    f"route images larger than {SMALL_SIDE} px to a natural-resolution detector)"]
        return []

    @property
    def name(self) -> str:
        return self.small if self.small == self.large else "auto"

    @property
    def threshold(self) -> float | None:
        """The decision threshold when every detector shares one (None when they differ)."""
        values = {d.threshold for d in self.detectors.values()}
        return values.pop() if len(values) == 1 else None

    def __repr__(self) -> str:
        if self.small == self.large:
            return f"Router({self.small!r})"
        return f"Router(<= {SMALL_SIDE} px: {self.small!r}, larger: {self.large!r})"

    def predict(self, inputs: Any, names: list[str] | None = None, threshold: float | None = None, batch_size: int = 256,
                verdict: str = "pixels", provenance: bool | None = None):
        """One input gives a Record, a list gives a list; each picks its detector by size.

        `verdict="combined"` lets strong provenance override the pixel verdict (the record says so);
        `provenance=False` skips reading it."""
        return pipeline.predict(self, inputs, names, threshold=threshold, batch_size=batch_size, verdict=verdict,
                                provenance=self.provenance if provenance is None else provenance)

    def predict_iter(self, items, threshold: float | None = None, batch_size: int = 256, workers: int | None = 0,
                     max_pixels: int = DEFAULT_MAX_PIXELS, verdict: str = "pixels", provenance: bool | None = None):
        """Records for (input, name) pairs, in order; an input is a Sample, a path, bytes, a PIL image or
        an array. `workers` decoding processes (None: decided from the first batch)."""
        return pipeline.run(self, items, threshold, batch_size, workers, max_pixels, verdict,
                            self.provenance if provenance is None else provenance)

    def predict_samples(self, samples, batch_size: int = 256, workers: int | None = None, verdict: str = "pixels",
                        max_pixels: int = DEFAULT_MAX_PIXELS, keep_pixels: bool = False):
        """Records for data-source samples, in order (with `keep_pixels`: (Record, Prepared) pairs)."""
        return pipeline.run(self, ((s, s.locator) for s in samples), None, batch_size, workers, max_pixels, verdict,
                            self.provenance, keep_pixels)

    def explain(self, image, method: str = "gradcam", target: str = "verdict", name: str | None = None,
                threshold: float | None = None):
        """The explanation of one image by the detector its size picks (see realjudge.explain)."""
        from .explain import explain_prepared

        prepared = pipeline.prepare(image, name, self, provenance=False, keep_pixels=True)
        record = pipeline.score(self, [prepared], threshold)[0]
        if record.error:
            from .errors import DecodeError

            raise DecodeError(record.path, record.error.removeprefix(f"{record.path}: "))
        return explain_prepared(self.detectors[record.model], prepared, record, method, target)

    # Pickled into decode workers: only the policies travel, never the models.
    def __getstate__(self):
        return {"small": self.small, "large": self.large, "policies": {n: d.policy for n, d in self.detectors.items()},
                "provenance": self.provenance}

    def __setstate__(self, state):
        self.small, self.large, self.provenance = state["small"], state["large"], state["provenance"]
        self.detectors = {n: _PolicyOnly(p) for n, p in state["policies"].items()}


class _PolicyOnly:
    def __init__(self, policy):
        self.policy = policy
