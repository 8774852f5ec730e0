"""Summaries of measured samples: rates, percentiles and ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile of `values` (`share` from 0 to 1).

    Raises ValueError for an empty sequence.
    """
    if not values:
        raise ValueError("a percentile of no samples is undefined")
    if not 0 <= share <= 1:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """Percentiles of latency samples, in milliseconds."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summarise latencies given in seconds."""
        return cls(
            samples=len(seconds),
            p50_ms=percentile(seconds, 0.50) * 1000,
            p99_ms=percentile(seconds, 0.99) * 1000,
            max_ms=max(seconds) * 1000,
        )


def rate(count: int, seconds: float) -> float:
    """Return `count` per second over `seconds` (0 when no time passed)."""
    return count / seconds if seconds > 0 else 0.0


def ratio(value: float, baseline: float) -> float | None:
    """Return `value / baseline`, or None when the baseline is zero."""
    return value / baseline if baseline else None
