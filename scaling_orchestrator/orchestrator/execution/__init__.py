"""The Ray edge, the only subpackage that imports Ray (lazily, inside the functions that run).

  run.py         run_plan: a Tuner over a design's queue, resume from the store, RunSummary
  search.py      run_search: one Tuner per size of the hparams section, ASHA by tokens
  worker.py      the Tune trainable and the Ray Train worker loop (one trial)
  tuner.py       join or start Ray, check trials against the cluster, build the Tuner
  searcher.py    StudySearcher (a Tune Searcher over a TrialQueue), adaptive_searcher
  stops.py       asha_for and how a stop by Tune ends a trial in the store
  progress.py    the live progress line (a Tune callback)
  tune_config.py a trial's Tune config <-> TrialSpec
  resources.py   what a trial reserves; trials at a time from the cluster
  autoscaling.py what a `ray up` cluster may launch
"""
