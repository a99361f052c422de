"""Every evaluation read as the loss of a run under another schedule at the same step.

A run's loss at step t depends on its schedule: a trunk at constant LR has not annealed, a
cooldown has. A fitted curve law knows the difference. For an evaluation of run r at step t,

    L_other(N, t) = L_measured(r, t) x law(N, the other schedule of t steps, at step t)
                                     / law(N, r's own schedule, at step t)

The law's error in the floor and in its N dependence cancels in the ratio: only its schedule
terms act, and only at steps the run reached. methods/curve.py translates to a constant LR.

Why the curve method does not read the joint law's own optimum: on the demo's real curves
(bench/trunks_laptop.py) the joint law, extrapolated in N, put N* at 4.2e12 FLOPs at -63% of
the held-out budget's measured vertex with every evaluation, -44% to -54% leaving out the
first 20-50% of each run's steps.
"""

from __future__ import annotations

import numpy as np

START_SHARE = 0.3   # the share of a run's steps read from where the runs open with a transient


def translated_loss(curves, law, final_points, lr, schedule: str) -> np.ndarray:
    """L_other at each point of curves (module doc) for runs of `schedule` at peak LR lr.
    final_points(params, steps, lr, schedule): the last step of such runs (methods/curve.py's)."""
    other = law.predict(final_points(curves.params, curves.step, lr, schedule))
    own = law.predict(curves)
    return curves.loss * other / own


def read_points(curves, start_share: float = START_SHARE) -> np.ndarray:
    """Each run's evaluations from start_share of its steps on. The first evaluations of a
    small model sit on an early plateau and then fall faster than the laws allow; read as
    losses of a constant-LR run they bend the answer (methods/curve.py start_share)."""
    return curves.step >= start_share * curves.last_steps()
