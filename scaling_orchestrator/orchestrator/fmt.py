"""Numbers for people: one formatter per kind of number, shared by the plan, the progress line,
the search summary and `scaling status`, so the same value prints the same way everywhere."""

from __future__ import annotations


def si(x: float) -> str:
    """3 significant digits with an SI suffix: 91234 -> '91.2k', 4.2e12 -> '4.2T'."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def duration(seconds: float) -> str:
    """'42s', '7m04s', '2h05m', '3d04h'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def value(x) -> str:
    """A searched value: floats to 4 significant digits, anything else as str."""
    return f"{x:.4g}" if isinstance(x, float) else str(x)
