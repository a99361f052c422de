"""Choosing the next runs: an ensemble of fits and the interval shrink per FLOP each candidate
buys (adaptive studies and `scaling select` over a pool)."""
