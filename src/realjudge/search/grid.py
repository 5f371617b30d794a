"""Topologies of the CIFAKE family and their analytic cost.

A topology is (n_conv, filters, n_dense, units): `n_conv` blocks of 3x3 conv (`filters` channels,
padding 1) + ReLU + 2x2 max-pool, flatten, `n_dense` ReLU layers of `units`, one logit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UsageError
from ..models.cifake_cnn import CONV_STAGE, DENSE_UNITS

DENSE_LAYERS = (1, 2, 3)
STAGE1_DENSE = (1, 64)  # the paper's convolution stage uses one dense layer of 64


@dataclass(frozen=True, order=True)
class Topology:
    n_conv: int
    filters: int
    n_dense: int
    units: int

    @property
    def key(self) -> str:
        return f"{self.n_conv}x{self.filters}/{self.n_dense}x{self.units}"

    def kwargs(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def parse(cls, spec: str) -> "Topology":
        """'2x32/1x64' -> two 32-filter conv blocks, one dense layer of 64."""
        try:
            conv, dense = spec.strip().split("/")
            n_conv, filters = (int(v) for v in conv.split("x"))
            n_dense, units = (int(v) for v in dense.split("x"))
        except ValueError:
            raise UsageError(f"topology {spec!r} must look like NCONVxFILTERS/NDENSExUNITS, e.g. 2x32/1x64") from None
        if not (1 <= n_conv <= 5 and filters >= 1 and n_dense >= 0 and units >= 1):
            raise UsageError(f"topology {spec!r}: need 1 <= n_conv <= 5, filters >= 1, n_dense >= 0, units >= 1")
        return cls(n_conv, filters, n_dense, units)


def conv_stage(conv=CONV_STAGE, dense=STAGE1_DENSE) -> list[Topology]:
    """Stage 1 of the paper: every (n_conv, filters) with one dense layer of 64."""
    return [Topology(n, f, *dense) for n, f in conv]


def dense_stage(best_conv: Topology, layers=DENSE_LAYERS, units=DENSE_UNITS) -> list[Topology]:
    """Stage 2 of the paper: the best convolution stage with every (n_dense, units)."""
    return [Topology(best_conv.n_conv, best_conv.filters, d, u) for d in layers for u in units]


def count_params(t: Topology, input_size: int = 32) -> int:
    """Weights + biases, computed from the shapes (equals the model's parameter count)."""
    n, c = 0, 3
    for _ in range(t.n_conv):
        n += c * t.filters * 9 + t.filters
        c = t.filters
    flat = t.filters * (input_size >> t.n_conv) ** 2
    for _ in range(t.n_dense):
        n += flat * t.units + t.units
        flat = t.units
    return n + flat + 1


def count_macs(t: Topology, input_size: int = 32) -> int:
    """Multiply-adds of one forward pass on one image: convs at their resolution, dense layers, output.

    Each conv runs at the resolution left by the pools before it (padding 1 keeps it); pooling,
    ReLU and biases are not multiply-adds.
    """
    macs, c, side = 0, 3, input_size
    for _ in range(t.n_conv):
        macs += side * side * c * t.filters * 9
        c, side = t.filters, side // 2
    flat = c * side * side
    for _ in range(t.n_dense):
        macs += flat * t.units
        flat = t.units
    return macs + flat
