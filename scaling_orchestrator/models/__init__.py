"""Plain PyTorch: the Transformer size family with exact counts, data, and the training loop.

No Ray import anywhere in this package (a test enforces it)."""
