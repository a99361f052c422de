"""One Parquet file per trial, rewritten atomically; checkpoints, metadata, the results
folder lock, and `scaling status`."""
