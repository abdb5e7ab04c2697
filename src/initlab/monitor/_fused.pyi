# The monitor's fused CPU reductions (_fused.c); probes.py checks device, dtype and layout before calling.

def sums(address: int, count: int, float64: bool, hi: float, lo: float, /) -> tuple[float, float, float, float, float]:
    """Sum, sum of squares, count > 0, count >= hi, count <= lo of ``count`` values at ``address``."""

def sumsq(addresses: list[int], counts: list[int], float64: bool, /) -> list[float]:
    """The sum of squares of ``counts[i]`` values at each address (0.0 where the address is 0)."""
