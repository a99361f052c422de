"""A study as typed data: YAML -> a frozen Sweep (model sizes, recipe, resources, design
options), TrialSpec, and the value checks whose errors name the field."""
