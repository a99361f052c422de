"""Schedule-aware loss-curve laws: schedules and their areas (schedule), the laws (forms),
fitting, prediction and the automatic choice (fit)."""
