"""What a study leaves in its results folder, and reading it back. No Ray.

  results.py     Store: one Parquet file per trial, rewritten atomically; checkpoints, metadata,
                 the plan file; read_results(folder) -> pyarrow.Table
  lock.py        the results folder's study lock, and the local Ray a driver left behind
  status.py      `scaling status` and the live progress line's counts (Tally)
  tracker_runs.py  a tracker's run of a trial: name, id, config, the curve points fed to it
"""
