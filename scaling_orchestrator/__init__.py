"""scaling-orchestrator: a compute budget and a Ray cluster in, a compute-optimal recipe out.

  models/        plain PyTorch: shapes with exact counts, data, the training loop (no Ray)
  orchestrator/  spec -> plan -> designs -> Ray Tune/Train execution -> Parquet store
  analysis/      numpy/scipy/pyarrow only: scaling-law fits, judgement, reports
  cli/           the `scaling` command
"""
