"""A Tune config -> the TrialSpec it trains and the folder its rows go to.

The trial (worker.trainable), the driver settling an ASHA stop (stops.record_stop) and the
search (search.resolve) read a config the same way, so they agree on its trial id and folder.
A config is JSON-plain (worker's docstring lists its keys): "trial" is TrialSpec.to_dict(), and
any TrainConfig field at its top level replaces the trial's. An override changes what is
trained, so it changes the trial id (the content hash): a search over "lr" is one trial id, and
one row file, per lr.
"""

from __future__ import annotations

import dataclasses
import numbers
import os

from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import absolute

CONFIG_KEYS = ("trial", "results_dir", "fail_at_step", "torch_backend", "max_failures", "driver_host")
# Searched values arrive as numpy numbers (tune.randint gives numpy.int64), which json hashes
# differently from the int a spec holds ("4096" vs 4096): cast to the field's declared type.
CASTS = {"int": (numbers.Integral, int), "float": (numbers.Real, float), "str": (str, str)}


def overrides(spec: TrialSpec, config: dict) -> dict:
    """The TrainConfig fields a Tune config sets at its top level, cast to the field's type."""
    fields = {f.name: f.type for f in dataclasses.fields(spec.train)}
    unknown = [k for k in config if k not in CONFIG_KEYS and k not in fields]
    if unknown:
        raise ValueError(f"trainable config keys {unknown}: allowed {list(CONFIG_KEYS)} and "
                         f"TrainConfig fields {sorted(fields)}")
    out = {}
    for key in (k for k in config if k in fields):
        kind, cast = CASTS.get(str(fields[key]), (None, None))
        value = config[key]
        castable = kind is not None and isinstance(value, kind) and not isinstance(value, bool)
        out[key] = cast(value) if castable else value
    return out


def apply_overrides(spec: TrialSpec, config: dict) -> TrialSpec:
    """The trial a Tune config trains: its TrainConfig fields replace the trial's."""
    changes = overrides(spec, config)
    if not changes:
        return spec
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes))


def spec_of(config: dict) -> TrialSpec:
    return apply_overrides(TrialSpec.from_dict(config["trial"]), config)


def results_dir_for(spec: TrialSpec, config: dict) -> str:
    """config's results_dir, else ~/scaling-results/<sweep>. A relative one is read from the
    directory the Tuner was started in: worker.with_trial_resources makes it absolute on the
    driver; used bare, Tune's TUNE_ORIG_WORKING_DIR (the trial process's directory before Tune
    moved it into .../working_dirs/<trial>; on a local Ray, the driver's) stands in."""
    path = config.get("results_dir") or os.path.join("~", "scaling-results", spec.sweep)
    return absolute(path, os.environ.get("TUNE_ORIG_WORKING_DIR") or os.getcwd())
