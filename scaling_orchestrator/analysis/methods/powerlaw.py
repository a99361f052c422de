"""y = coef * x^exponent by ordinary least squares in log10-log10: the one power-law fit every
approach shares (IsoFLOP N*(C), the envelope, Kaplan's L(N), the hyperparameter laws).

E.g. N* = 1.0e8 at C = 1e18 and 2.8e8 at C = 1e19 give exponent log10(2.8) = 0.447 and
coef = 1e8 / 1e18^0.447 = 9.1e-1.
"""

from __future__ import annotations

import numpy as np


def powerlaw_fit(x, y) -> tuple[float, float]:
    """y = coef * x^exponent by OLS in log10-log10; returns (exponent, coef)."""
    lx, ly = np.log10(np.asarray(x, float)), np.log10(np.asarray(y, float))
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(10.0 ** intercept)
