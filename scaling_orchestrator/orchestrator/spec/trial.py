"""A trial: everything one training run needs, as data, with a content-hash identity.

The planner produces TrialSpecs; the runner ships them to Ray as plain dicts (Tune configs must
be JSON-like) and the first line of every Ray function turns the dict back into a TrialSpec.
Identity is a hash of what determines the result (shape, data, recipe, budget, kind), so
re-planning the same spec gives the same ids and re-running finished work does nothing.
Resources are left out of the hash: moving a trial to a bigger machine does not change it, and
so are an adaptive study's round and reason (why it was chosen, not what it trains).

Ids stay stable as the code grows: a field added to TrainConfig or ModelShape after ids were
first published is listed in that class's ADDED_FIELDS and hashed only when it differs from its
default, and the trial's own later fields (parent_trial_id, branch_tokens, simulate) likewise.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field

from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig


@dataclass(frozen=True)
class Resources:
    """What one trial reserves on the cluster (per Ray Train worker, times num_workers).

    num_workers=0 runs the training loop inside the Tune trial process (no worker group): the
    cheap path for single-process CPU trials on a laptop. num_workers>=1 starts a Ray Train
    worker group of that size (multi-worker or GPU trials).
    """

    num_workers: int = 0
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    resources_per_worker: dict = field(default_factory=dict)
    memory_per_worker_gb: float = 0.0  # what one worker may hold (a GPU's memory); 0: not declared

    @property
    def cpus_per_trial(self) -> float:
        return self.cpus_per_worker * max(self.num_workers, 1)

    @property
    def gpus_per_trial(self) -> float:
        return self.gpus_per_worker * max(self.num_workers, 1)


@dataclass(frozen=True)
class TrialSpec:
    sweep: str
    kind: str  # "scaling" | "hparam"
    shape: ModelShape
    data: DataSpec
    train: TrainConfig
    budget_flops: float
    resources: Resources = Resources()
    group: str = ""
    size_label: str = ""  # the size's one name, ModelSpec.label ("d4", "L4xD128"); not part of the identity
    parent_trial_id: str = ""  # a branch: the trunk it starts from
    branch_tokens: int = 0  # a branch: the trunk's token count at its start
    simulate: dict | None = None
    round: int = 0  # an adaptive study: the round that chose it; not part of the identity
    reason: str = ""  # an adaptive study: why it was chosen; not part of the identity

    @property
    def backend(self) -> str:
        """ "simulate" (losses drawn from a law: a rehearsal, never a measurement) or "torch"."""
        return "simulate" if self.simulate else "torch"

    @property
    def flops(self) -> float:
        """Exact training FLOPs: tokens x Chinchilla App. F flops_per_token."""
        return float(self.train.total_tokens) * self.shape.flops_per_token()

    @property
    def own_flops(self) -> float:
        """What this trial itself trains: a branch's cooldown past its trunk's branch point (the
        trunk spent the rest; its rows' `flops` still count the whole path), else all of flops."""
        return float(self.train.total_tokens - self.branch_tokens) * self.shape.flops_per_token()

    @functools.cached_property  # hashed once: a 1,000-trial run asked 23,000 times
    def trial_id(self) -> str:
        identity = {
            "kind": self.kind,
            "shape": _fields(self.shape),
            "data": dataclasses.asdict(self.data),
            "train": _fields(self.train),
            "budget_flops": float(self.budget_flops),
            "group": self.group,
        }
        for name in ("parent_trial_id", "branch_tokens", "simulate"):  # hashed once set
            if getattr(self, name):
                identity[name] = getattr(self, name)
        blob = json.dumps(identity, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["trial_id"] = self.trial_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrialSpec:
        return cls(
            sweep=d["sweep"],
            kind=d["kind"],
            shape=ModelShape(**d["shape"]),
            data=DataSpec(**d["data"]),
            train=TrainConfig(**d["train"]),
            budget_flops=float(d["budget_flops"]),
            resources=Resources(**d.get("resources", {})),
            group=d.get("group", ""),
            size_label=d.get("size_label", ""),
            parent_trial_id=d.get("parent_trial_id", ""),
            branch_tokens=int(d.get("branch_tokens", 0)),
            simulate=d.get("simulate"),
            round=int(d.get("round", 0)),
            reason=d.get("reason", ""),
        )


def _fields(obj) -> dict:
    """dataclasses.asdict(obj) less the ADDED_FIELDS that still hold their defaults, so a trial
    planned before a field existed keeps its id."""
    added, unhashed = getattr(type(obj), "ADDED_FIELDS", ()), getattr(type(obj), "UNHASHED_FIELDS", ())
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    return {k: v for k, v in dataclasses.asdict(obj).items()
            if k not in unhashed and not (k in added and _same(v, defaults[k]))}


def _same(value, default) -> bool:
    """A tuple field comes back from JSON as a list: () and [] are the same default."""
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default
