"""Judging the methods: the back-test on held-out budgets, forecasts, the recommendation per
method and target, the one headline answer with its verdict, and the warnings."""
