"""Scaling-law analysis from Arrow/Parquet/CSV tables: pure numpy, scipy and pyarrow.

Neither torch nor ray is imported here (a test enforces it), so fits run on a laptop.

    from scaling_orchestrator.analysis import fit
    result = fit("results/demo", target_flops=[1e15])
    result.compute_optimal(1e15, method="parametric").params
    result.write_report("report/")

`fit` and `FitResult` load on first use: a process that only needs the row schema (a training
worker writing rows) does not pay for scipy.
"""

from __future__ import annotations

__all__ = ["FitResult", "fit"]


def __getattr__(name: str):
    if name == "fit":
        from scaling_orchestrator.analysis.pipeline import fit

        return fit
    if name == "FitResult":
        from scaling_orchestrator.analysis.result import FitResult

        return FitResult
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
