"""Tables in: the row schema (versioned), any Parquet/Arrow/CSV/DataFrame -> fit-ready Points."""
