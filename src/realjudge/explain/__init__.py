"""Explanations: where in the image a detector found its evidence.

    from realjudge.explain import explain
    exp = explain(detector, "photo.jpg", method="gradcam")
    exp.heatmap        # float32 H x W in [0, 1], at the model's input resolution
    exp.overlay        # PIL RGB image, short side >= 256 px
    exp.overlay_png()  # PNG bytes
    exp.record         # the Record (p_fake, verdict...) of that image
"""

from .explanation import TARGETS, Explanation, describe_explained, explain, explain_prepared
from .gradcam import METHODS
from .writer import OverlayWriter

__all__ = ["describe_explained", "Explanation", "OverlayWriter", "explain", "explain_prepared", "METHODS", "TARGETS"]
