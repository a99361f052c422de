"""What trains a trial besides the built-in torch loop: the simulate backend."""
