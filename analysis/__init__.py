"""Scaling-law analysis from Arrow/Parquet/CSV tables: pure numpy, scipy and pyarrow.

Neither torch nor ray is imported here (a test enforces it), so fits run on a laptop."""
