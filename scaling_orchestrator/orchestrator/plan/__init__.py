"""A Plan and the arithmetic every design builds one with, and what its trials reserve on a
cluster. Pure and deterministic (autoscaling.py reads one file); no Ray.

  build.py       Plan (trials, dropped, notes, cost, --json) and its helpers: select_sizes,
                 make_trial, infeasible (the one feasibility rule), trial_lr, makespan
  placement.py   a trial on the cluster: resources by size, a micro-batch that fits, GPU-hours
  text.py        `scaling plan`'s table
  resources.py   what a trial reserves from Ray; trials at a time on a cluster; check_fits
  autoscaling.py what a `ray up` cluster may launch (the config it leaves on the head node)
"""
