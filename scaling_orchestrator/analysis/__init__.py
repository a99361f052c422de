"""Scaling-law analysis from Arrow/Parquet/CSV tables: pure numpy, scipy and pyarrow.

Neither torch nor ray is imported here (a test enforces it), so fits run on a laptop.

    from scaling_orchestrator.analysis import Columns, FitOptions, FitResult, fit
    result = fit("results/demo", options=FitOptions(target_flops=(1e15,)))
    result.compute_optimal(1e15, method="parametric").params
    result.write_report("report/")
    FitResult.load("report/fit.json").predict(1e8, 2e9)

Layers, each importing only from those before it: errors, numerics < data (schema, load,
points) < laws < methods < judge < report < design < options, fit_json < result < pipeline
(fit), predict.

These names load on first use (PEP 562): a training worker importing the row schema
(data.schema) runs this file too, and should not pay for scipy.
"""

from __future__ import annotations

import importlib

__all__ = ["Columns", "FitOptions", "FitResult", "fit", "load_curves"]
_HOME = {"Columns": "options", "FitOptions": "options", "FitResult": "result", "fit": "pipeline",
         "load_curves": "data.curves"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
