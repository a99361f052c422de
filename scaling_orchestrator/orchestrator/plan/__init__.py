"""A Plan and the arithmetic every design builds one with. Pure and deterministic; no Ray.

  build.py       Plan (trials, dropped, notes, cost, --json) and its helpers: select_sizes,
                 make_trial, infeasible (the one feasibility rule), trial_lr, makespan
  placement.py   a trial on the cluster: resources by size, a micro-batch that fits, GPU-hours
  text.py        `scaling plan`'s table
"""
