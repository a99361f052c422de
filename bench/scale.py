"""1,000 simulated trials through run_plan on a fake GPU cluster: slot utilisation, driver memory,
and `scaling status` / `scaling fit` time on the results.

    python bench/scale.py                       # 1,000 trials, 16 nodes x 8 GPUs (the issue's size)
    python bench/scale.py --nodes 4             # 32 GPU slots: what a 24 GiB machine holds (below)

The cluster is ray.cluster_utils.Cluster: a head with the `driver` resource (cluster.yaml's head)
and N nodes declaring 8 GPUs each. Each trial is the simulate backend (orchestrator/simulate.py:
losses drawn from Chinchilla's law, a rehearsal, never a measurement) in the Tune trial's own
process, holding one GPU (resources_per_worker). The study is 10 budgets (1e17..3e18 FLOPs) x 10
sizes x 10 seeds; the 100-trial run keeps 1 seed.

Slot time. A simulated trial computes its losses in milliseconds, so the busy fraction of a GPU
slot would measure nothing but Tune's overhead. Each trial here holds its slot as a real one
would, scaled: every evaluation waits until the trial's wall clock reaches its FLOPs so far /
rate, the rate chosen so the largest trial (3e18 FLOPs) holds --longest-seconds (30 s: a 1:126
time scale against 40% MFU of two H100s, 7.9e14 FLOP/s, the GPU example's rate). Durations keep
their real ratios (30x between budgets, LPT order matters), while the scheduler's gap between
one trial ending and the next starting on that slot stays the same number of seconds, so the
utilisation printed is a lower bound for the same study at full scale.

    utilisation = sum over trials of (finished - started) x GPUs held
                  / (GPU slots x (last finish - first start))

started/finished are what each trial's worker writes to _trials/<id>.json around its loop, so
busy means training, not a trial's start-up. Driver peak memory is the ru_maxrss of a fresh
process per run (the run_plan caller, without the cluster's own processes). A cProfile of the
1,000-trial driver is saved next to the results; its top orchestrator functions are printed.

Memory: each concurrent trial is a Ray worker process of about 150 MB (Tune, pyarrow, the store;
measured PSS 142 MB) and each fake node's raylet and agents about 300 MB, so 128 slots need about
24 GB; the bench refuses a cluster larger than 80% of the memory available (--nodes 4 on a 24 GiB
machine).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LARGEST_FLOPS = 3e18
TRIAL_PROCESS_MB = 150  # a trial's Ray worker process: 142 MB PSS measured (Tune, pyarrow, the store)
NODE_MB = 300  # a fake node's raylet and agents
CHINCHILLA = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.3478, "beta": 0.3658}  # Besiroglu et al. 2024


def spec(trials: int, storage: str) -> dict:
    """10 budgets x 10 sizes x (trials / 100) seeds of simulated trials, each holding one GPU."""
    import numpy as np

    budgets = [float(f"{b:.3g}") for b in np.geomspace(1e17, LARGEST_FLOPS, 10)]
    return {"name": f"scale-{trials}", "budgets_flops": budgets, "sizes_per_budget": 10,
            "seeds": list(range(max(1, trials // 100))),
            "model": {"depth": {"min": 2, "max": 32}, "aspect_ratio": 64, "head_dim": 64, "seq_len": 1024},
            "prior": {"tokens_per_param": 20, "span": 8}, "data": {"corpus": "pydoc", "tokenizer": "byte"},
            "train": {"batch_tokens": 131072, "evals_per_trial": 8},
            "resources": {"num_workers": 0, "cpus_per_worker": 1, "resources_per_worker": {"GPU": 1}},
            "simulate": {"law": "chinchilla", "params": CHINCHILLA, "noise": 0.01, "seed": 0},
            "max_failures": 1, "storage": storage}


def paced_trainable(flops_per_second: float):
    """worker.trainable whose simulated evaluations wait until wall clock >= FLOPs so far / rate.
    Defined here, it travels to the trial processes by value (cloudpickle of __main__)."""

    def trainable(config: dict) -> None:
        import scaling_orchestrator.orchestrator.backends.simulate as simulate
        from scaling_orchestrator.orchestrator.execution import worker

        if not hasattr(simulate, "unpaced_train"):
            simulate.unpaced_train = simulate.simulate_train

            def paced(spec, config, *, on_eval=None, **kwargs):
                began = time.perf_counter()

                def hold(m, ckpt):
                    time.sleep(max(0.0, m.flops / flops_per_second - (time.perf_counter() - began)))
                    if on_eval is not None:
                        on_eval(m, ckpt)

                return simulate.unpaced_train(spec, config, on_eval=hold, **kwargs)

            simulate.simulate_train = paced
        return worker.trainable(config)

    return trainable


def child(args) -> None:
    """One run_plan on a fresh fake cluster; prints {"peak_rss_mb", "wall_seconds", ...} as JSON."""
    import ray
    from ray.cluster_utils import Cluster

    import scaling_orchestrator.orchestrator.execution.run as run
    from scaling_orchestrator.orchestrator import make_plan
    from scaling_orchestrator.orchestrator.spec.sweep import parse_sweep

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
    plan = make_plan(parse_sweep(spec(args.trials, args.results), "scale"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"driver": 1},
                                                            "include_dashboard": False})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=args.gpus_per_node, num_gpus=args.gpus_per_node)
    run.trainable = paced_trainable(LARGEST_FLOPS / args.longest_seconds)
    profile = cProfile.Profile()
    start = time.time()
    try:
        profile.enable()
        summary = run.run_plan(plan, args.results, address=cluster.address, progress=True)
        profile.disable()
    finally:
        ray.shutdown()
        cluster.shutdown()
    profile.dump_stats(os.path.join(args.results, "_driver.prof"))
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "wall_seconds": time.time() - start, "completed": len(summary.completed),
                      "failed": len(summary.failed)}))


def utilisation(results: str, slots: int) -> dict:
    """Busy GPU-slot seconds over available ones, from each trial's started/finished metadata."""
    from scaling_orchestrator.orchestrator.store.results import Store

    store = Store(results)
    spans = []
    for spec_ in store.read_plan():
        meta = store.read_meta(spec_.trial_id)
        if meta.get("started") and meta.get("finished"):
            gpus = spec_.resources.resources_per_worker.get("GPU", 1)
            spans.append((meta["started"], meta["finished"], gpus))
    first, last = min(s for s, _, _ in spans), max(f for _, f, _ in spans)
    busy = sum((f - s) * gpus for s, f, gpus in spans)
    return {
        "utilisation": busy / (slots * (last - first)),
        "busy": busy,
        "available": slots * (last - first),
        "trials": len(spans),
        "window": last - first,
        "first_wave_start": _wave_start(spans, slots),
    }


def _wave_start(spans, slots: int) -> float:
    """Seconds from the first trial's start to the slots-th start: how long filling the cluster took."""
    starts = sorted(s for s, _, _ in spans)
    return starts[min(slots, len(starts)) - 1] - starts[0]


def available_mb() -> float:
    """MemAvailable of this machine (Linux), in MB; unlimited elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return float("inf")


def timed(argv: list[str]) -> float:
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "scaling_orchestrator", *argv], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"scaling {' '.join(argv)}: {done.stderr.strip()[-500:]}")
    return time.time() - start


def done_ids_seconds(results: str) -> float:
    """One store.done_trial_ids() over the results folder: it reads every row file."""
    from scaling_orchestrator.orchestrator.store.results import Store

    start = time.time()
    Store(results).done_trial_ids()
    return time.time() - start


def run_child(args, trials: int, results: str) -> dict:
    argv = [
        sys.executable,
        __file__,
        "--child",
        "--trials",
        str(trials),
        "--results",
        results,
        "--nodes",
        str(args.nodes),
        "--gpus-per-node",
        str(args.gpus_per_node),
        "--longest-seconds",
        str(args.longest_seconds),
    ]
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {trials}-trial run failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_lines(path: str, top: int = 12) -> list[str]:
    """The driver's costliest functions by cumulative time, orchestrator's own first."""
    stats = pstats.Stats(path)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])
    ours = [
        (f"{os.path.relpath(fn, ROOT)}:{line} {name}", ct, nc)
        for (fn, line, name), (_, nc, _, ct, _) in rows
        if fn.startswith(os.path.join(ROOT, "orchestrator"))
    ]
    return [f"  {ct:7.1f} s cumulative, {nc:6d} calls  {where}" for where, ct, nc in ours[:top]]


TUNE_COSTS = {  # (file suffix, functions) -> what the closing line calls it
    (
        "tune/logger/logger.py",
        ("on_trial_result", "on_trial_complete"),
    ): "auto loggers (CSV, JSON, TensorBoard)",
    ("tune/execution/tune_controller.py", ("checkpoint",)): "experiment-state checkpoints",
    ("tune/analysis/experiment_analysis.py", ("__init__",)): "ExperimentAnalysis at the end of Tuner.fit",
    ("ray/_private/worker.py", ("wait",)): "waiting for results (idle)",
}


def tune_costs(path: str) -> str:
    """Where Ray Tune's own driver time went, from the profile: '123.0 s auto loggers, ...'."""
    stats, parts = pstats.Stats(path).stats, []
    for (suffix, names), label in TUNE_COSTS.items():
        seconds = sum(
            ct for (fn, _, name), (_, _, _, ct, _) in stats.items() if fn.endswith(suffix) and name in names
        )
        parts.append(f"{seconds:.1f} s {label}")
    return ", ".join(parts)


def profile_calls(path: str, function: str) -> int:
    """How many times the profiled driver called orchestrator's `function`."""
    return sum(
        nc
        for (fn, _, name), (_, nc, _, _, _) in pstats.Stats(path).stats.items()
        if name == function and fn.startswith(os.path.join(ROOT, "orchestrator"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--small", type=int, default=100, help="the run driver memory is compared with")
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--longest-seconds", type=float, default=30.0, help="slot time of the largest trial")
    parser.add_argument("--results", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    slots = args.nodes * args.gpus_per_node
    need_mb, have_mb = slots * TRIAL_PROCESS_MB + (args.nodes + 1) * NODE_MB, available_mb()
    if need_mb > 0.8 * have_mb:
        sys.exit(
            f"bench/scale.py: {slots} concurrent trials need about {need_mb / 1024:.0f} GB; this machine has "
            f"{have_mb / 1024:.0f} GB available: lower --nodes (each node holds {args.gpus_per_node} trials)"
        )
    base = args.results or tempfile.mkdtemp(prefix="scale-")
    runs = {n: run_child(args, n, os.path.join(base, f"trials-{n}")) for n in (args.small, args.trials)}
    big = os.path.join(base, f"trials-{args.trials}")
    u = utilisation(big, slots)
    seconds = {
        "status": timed(["status", big]),
        "fit": timed(["fit", big, "--json", os.path.join(base, "fit.json")]),
        "fit0": timed(
            ["fit", big, "--bootstrap", "0", "--json", os.path.join(base, "fit-no-bootstrap.json")]
        ),
        "done_ids": done_ids_seconds(big),
    }
    report(args, base, runs, u, seconds)


def report(args, base: str, runs: dict, u: dict, seconds: dict) -> None:
    slots, big = args.nodes * args.gpus_per_node, os.path.join(base, f"trials-{args.trials}")
    print(
        f"cluster: {args.nodes} nodes x {args.gpus_per_node} GPUs = {slots} slots; {args.trials} simulated "
        f"trials, the largest holding its slot {args.longest_seconds:g} s; results in {base}"
    )
    print(
        f"utilisation {u['utilisation']:.2f} ({u['busy']:.0f} busy of {u['available']:.0f} GPU-slot-seconds, "
        f"{u['trials']} trials in {u['window']:.0f} s; the first {slots} trials all started within "
        f"{u['first_wave_start']:.1f} s)"
    )
    print(
        f"driver peak memory: {args.small} trials {runs[args.small]['peak_rss_mb']:.0f} MB, "
        f"{args.trials} trials {runs[args.trials]['peak_rss_mb']:.0f} MB"
    )
    print(
        f"run_plan wall: {args.small} trials {runs[args.small]['wall_seconds']:.0f} s, "
        f"{args.trials} trials {runs[args.trials]['wall_seconds']:.0f} s "
        f"({runs[args.trials]['completed']} completed, {runs[args.trials]['failed']} failed)"
    )
    print(f"scaling status: {seconds['status']:.1f} s")
    print(
        f"scaling fit: {seconds['fit']:.1f} s (default bootstrap); {seconds['fit0']:.1f} s with --bootstrap 0"
    )
    calls = profile_calls(os.path.join(big, "_driver.prof"), "done_trial_ids")
    print(
        f"store.done_trial_ids: {calls} calls in the {args.trials}-trial "
        f"run_plan, {seconds['done_ids']:.2f} s a call "
        f"on the finished folder: a re-run with every trial done reads it {calls} times, about "
        f"{calls * seconds['done_ids']:.0f} s before Tune starts"
    )
    print(f"Tune in the {args.trials}-trial driver: {tune_costs(os.path.join(big, '_driver.prof'))}")
    print(f"driver profile, {args.trials} trials (orchestrator functions):")
    print("\n".join(profile_lines(os.path.join(big, "_driver.prof"))))


if __name__ == "__main__":
    main()
