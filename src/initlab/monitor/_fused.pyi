# The monitor's fused CPU reductions (_fused.c); probes.py checks device, dtype and layout before calling.

def sums(address: int, count: int, float64: bool, hi: float, lo: float, /) -> tuple[float, float, float, float, float]:
    """Sum, sum of squares, count > 0, count >= hi, count <= lo of ``count`` values at ``address``."""

def sumsq(addresses: list[int], counts: list[int], float64: bool, /) -> list[float]:
    """The sum of squares of ``counts[i]`` values at each address (0.0 where the address is 0)."""

def snapshot(addresses: list[int], counts: list[int], float64: bool, destination: int, /) -> None:
    """Copy ``counts[i]`` values from each address, one after another, to ``destination``."""

def update_sumsq(addresses: list[int], counts: list[int], float64: bool, snapshot: int, /) -> list[float]:
    """Per address, the sum of squares of (values − their copy in ``snapshot``), then of the values."""
