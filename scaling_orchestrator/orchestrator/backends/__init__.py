"""What trains a trial besides the built-in torch loop: simulate.py draws its losses from a law
(the spec's simulate section, parsed in spec/sections/simulate.py). No Ray; execution/worker.py calls it."""
