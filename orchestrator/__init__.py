"""Spec -> plan -> Ray Tune/Train execution -> Parquet results; the CLI. The only Ray code."""
