"""The ways to read a compute-optimal answer out of runs besides the parametric law:
IsoFLOP valleys (Approach 2), the loss envelope (Approach 1), Kaplan-style single-variable laws,
and the hyperparameter laws lr*(N), B*(C) fitted from a search."""
