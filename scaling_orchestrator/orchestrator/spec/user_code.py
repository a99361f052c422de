"""The one place a user's code is imported by name: "package.module:function".

A spec names code of the user's own (backend: {kind: python, function}, model.counts) as a
string, imported where it is used: a trial's process for a trainer, the planner for counts.
The spec's folder is searched after sys.path, so a module kept beside the spec
(examples/external/) is found without installing it.
"""

from __future__ import annotations

import importlib
import sys


def load_function(name: str, search_dir: str = ""):
    """The callable `name` ("package.module:function") names; a ValueError naming what is missing."""
    module_name, _, attr = name.partition(":")
    if search_dir and search_dir not in sys.path:
        sys.path.append(search_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        where = f" (searched sys.path and {search_dir})" if search_dir else ""
        raise ValueError(f"{name}: cannot import {module_name}{where}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{name}: {module_name} has no function {attr}")
    return fn
