"""One parser per section of a study spec (model, hparams, resources, design, simulate, ...): each
turns its YAML mapping into a frozen dataclass and names the field and value of any bad input.
spec/sweep.py composes them into a Sweep."""
