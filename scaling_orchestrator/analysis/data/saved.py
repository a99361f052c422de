"""A `scaling fit --json` file (fit.json) read as plain JSON, one way for every reader:
FitResult.load turns it into a FitResult, load_lr_law into the planner's lr(N). A missing
file is FileNotFoundError and a file that is not JSON a ValueError, each naming the path."""

from __future__ import annotations

import json
from pathlib import Path


def read_fit_json(path):
    """The file's JSON value (a dict for a fit; the caller checks its sections)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not JSON ({err})") from None
