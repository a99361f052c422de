"""A study as typed data, checked before any compute is spent (the lowest layer but fmt).

  sweep.py       YAML -> a frozen Sweep (budgets, prior, recipe, throughput); load_sweep
  sections/      one parser per section: model (a size dial or explicit shapes), hparams (the
                 search; train.lr as written), design (each kind's options), simulate (a law the
                 simulate backend draws losses from), resources (per trial, and by size)
  trial.py       TrialSpec (one trial, its content-hash id) and Resources
  paths.py       corpus and storage paths: checked here, or where the study runs
  references.py  resolve(sweep): reads what prior.from_fit and train.lr point to, before planning
  validate.py    the value checks; every SpecError is one line naming the field
"""
