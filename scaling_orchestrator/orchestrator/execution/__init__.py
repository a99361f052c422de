"""The Ray edge, the only folder that imports Ray (lazily, inside the functions that run;
searcher.py, which subclasses Ray's Searcher, at the top), flat: no subfolder.

  run.py           run_plan: a Tuner over a design's queue, resume from the store, RunSummary
  search.py        run_search: one Tuner per size of the hparams section, ASHA by tokens
  worker.py        the Tune trainable and the Ray Train worker loop (one trial)
  tuner.py         join or start Ray, check trials against the cluster, build the Tuner; a
                   trial's Tune config <-> TrialSpec
  searcher.py      StudySearcher (a Tune Searcher over a TrialQueue), adaptive_searcher
  stops.py         asha_for and how a stop by Tune ends a trial in the store
  progress.py      the live progress line (a Tune callback)
  launch.py        a command or function trainer of the user's own, run inside a trial
  prepare_data.py  `scaling prepare` on Ray Data: a corpus's units tokenized by a pool of actors
  tracking.py      the spec's trackers (W&B, MLflow, TensorBoard) as Tune callbacks

What a trial reserves and what the cluster may launch: plan/resources.py, plan/autoscaling.py;
what a tracker's run holds: store/tracker_runs.py (none of them imports Ray).
"""
