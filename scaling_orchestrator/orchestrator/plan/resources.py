"""What a trial reserves, and how many trials fit on the cluster at once.

A trial is a Tune function trial (the "driver") plus, when num_workers >= 1, a Ray Train worker
group that Tune does not see. Tune reserves 1 CPU per trial by default and the workers reserve
theirs separately: on 2 CPUs, two trials of 1 worker each take both CPUs as drivers and then
wait forever for their workers (measured on Ray 2.60: "worker group startup timed out").
So a driver that only launches a worker group asks for DRIVER_CPU (0.01 CPU: 100 of them fit on
one core) and concurrency is sized from what the workers need; a trial with num_workers == 0
trains inside the driver, which then reserves the whole trial.
"""

from __future__ import annotations

import math

from scaling_orchestrator.orchestrator.spec.trial import Resources

DRIVER_CPU = 0.01
# Custom resource of the head node in cluster.yaml: drivers prefer it, so GPU nodes keep their
# CPUs for workers. 0.001 of it per driver: a head with `driver: 1` hosts 1000 drivers.
DRIVER_RESOURCE = "driver"
DRIVER_RESOURCE_SHARE = 0.001


def worker_bundle(res: Resources) -> dict:
    """Ray resources of one Train worker (or of the in-process trial)."""
    bundle = {"CPU": float(res.cpus_per_worker)}
    if res.gpus_per_worker:
        bundle["GPU"] = float(res.gpus_per_worker)
    bundle.update({k: float(v) for k, v in res.resources_per_worker.items()})
    return bundle


def trial_demand(res: Resources) -> dict:
    """Everything one trial holds while it runs (driver share + workers)."""
    if res.num_workers == 0:
        return worker_bundle(res)
    demand = {k: v * res.num_workers for k, v in worker_bundle(res).items()}
    demand["CPU"] = demand.get("CPU", 0.0) + DRIVER_CPU
    return demand


def driver_resources(res: Resources, cluster: dict) -> dict:
    """The Tune-side reservation of a trial (tune.with_resources takes lowercase cpu/gpu)."""
    if res.num_workers == 0:
        bundle = worker_bundle(res)
        out = {"cpu": bundle.pop("CPU"), "gpu": bundle.pop("GPU", 0.0)}
        out.update(bundle)
        return out
    out = {"cpu": DRIVER_CPU, "gpu": 0.0}
    if cluster.get(DRIVER_RESOURCE, 0) > 0:
        out[DRIVER_RESOURCE] = DRIVER_RESOURCE_SHARE
    return out


def max_concurrent(resources: list[Resources], cluster: dict) -> int:
    """Trials that may run at once so that ANY that many of them fit together: for each resource,
    the largest K whose K largest demands sum to at most the cluster's total (past the last
    trial, more trials count at the smallest demand), the minimum over resources.

    A cap from the largest demand alone would leave a mixed study's GPUs idle, and a cap from
    the average would let Tune start drivers whose worker groups never fit (they wait on each
    other: "worker group startup timed out"). Examples: 2 CPUs, trials of 1 worker x 1 CPU ->
    demand 1.01 CPU -> 1 (2 // 1.01); in-process trials of 1 CPU -> 2. 16 GPUs, trials of
    4, 4, 2 and ten of 1 GPU -> 4 + 4 + 2 + 1 x 6 = 16: 9 at once, where 16 // 4 gives 4.
    """
    if not resources:
        return 1
    demands = [trial_demand(res) for res in resources]
    fits = []
    for key in sorted({k for d in demands for k, v in d.items() if v > 0}):
        needs = sorted((d.get(key, 0.0) for d in demands), reverse=True)
        have = float(cluster.get(key, 0.0))
        if have < needs[0]:
            raise ValueError(
                f"resources: a trial needs {key}={needs[0]:g} but the cluster has {key}={have:g}; "
                f"lower cpus_per_worker/gpus_per_worker/num_workers or add nodes")
        fits.append(_largest_count(needs, have))
    return max(1, min(fits) if fits else 1)


def _largest_count(needs_descending: list[float], have: float) -> int:
    """The most demands, largest first, whose sum fits in `have`; trials beyond the list repeat
    the smallest demand (one kind of trial: have // need, as Tune would pack them)."""
    used, count = 0.0, 0
    for need in needs_descending:
        if used + need > have + 1e-9:
            return count
        used, count = used + need, count + 1
    smallest = needs_descending[-1]
    return count + (math.floor((have - used) / smallest + 1e-9) if smallest > 0 else 0)


def _field(key: str) -> str:
    """The spec field that asks for Ray resource `key`."""
    return {"CPU": "resources.cpus_per_worker", "GPU": "resources.gpus_per_worker"}.get(
        key, f"resources.resources_per_worker.{key}")


def check_fits(trials, capacity: dict, nodes: list[dict]) -> None:
    """Refuse, before Tune starts, a trial the cluster can never place: Tune would otherwise
    wait forever for its placement group (no error, no timeout).

    capacity: the most the cluster can hold per resource (its current total, or the
    autoscaler's maximum when larger); nodes: the resources of each node (alive or launchable).
    Two checks: the trial's whole demand against capacity (2 workers x 1 GPU on a 1-GPU
    cluster), and one worker's bundle against the largest node (gpus_per_worker 2 on two
    1-GPU nodes: 2 GPUs in total, none on one node). A one-line ValueError names the field.
    """
    for t in trials:
        res = t.resources
        for key, need in trial_demand(res).items():
            have = float(capacity.get(key, 0.0))
            if need > have + 1e-9:
                per = worker_bundle(res).get(key, 0.0)
                raise ValueError(
                    f"{_field(key)}={per:g} x num_workers={res.num_workers}: trial "
                    f"{t.trial_id} needs {key}={need:g} but the cluster has {key}={have:g} in "
                    f"total; lower {_field(key)} or add nodes with {key}")
        bundle = worker_bundle(res)
        if nodes and not any(all(float(n.get(k, 0.0)) + 1e-9 >= v for k, v in bundle.items())
                             for n in nodes):
            key = max(bundle, key=lambda k: bundle[k] - max(float(n.get(k, 0.0)) for n in nodes))
            largest = max(float(n.get(key, 0.0)) for n in nodes)
            raise ValueError(
                f"{_field(key)}={bundle[key]:g}: one worker of trial {t.trial_id} needs "
                f"{key}={bundle[key]:g} on one node, but the largest node has {key}={largest:g}; "
                f"lower {_field(key)} (and raise num_workers) or add larger nodes")
