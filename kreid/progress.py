"""One progress line with rate and ETA, for embedding (images) and training (steps)."""

from __future__ import annotations

import time


def rate_and_eta(done: float, total: float, start: float) -> tuple[float, float]:
    """(items per second since ``start``, seconds left) for ``done`` of ``total`` items."""
    rate = done / max(time.perf_counter() - start, 1e-9)
    return rate, (total - done) / max(rate, 1e-9)


def format_eta(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def progress_line(label: str, done: int, total: int, start: float, unit: str = "images",
                  rate: float | None = None) -> str:
    """``label: done/total unit, R unit/s, ETA T`` (``rate`` given: items/s to report)."""
    measured, eta = rate_and_eta(done, total, start)
    rate = measured if rate is None else rate
    if rate is not None and rate > 0:
        eta = (total - done) / rate
    return f"{label}: {done}/{total} {unit}, {rate:.0f} {unit}/s, ETA {format_eta(eta)}"
