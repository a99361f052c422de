"""How a study places its trials and when each may start: grid, branches, adaptive, shape."""
