"""cluster.yaml's topology under Ray's own autoscaler, on this machine: the head with the `driver`
resource and no GPU, GPU worker nodes from min_workers 0, launched when trials ask for GPUs.

Ray's fake multinode provider (ray.autoscaler._private.fake_multi_node) starts each node the
autoscaler launches as a real raylet here, so the head's monitor, the resource demands, the
launch and the placement are Ray's own; only EC2 and SSH are left out. The config is cluster.yaml
with the provider swapped and each node type's resources declared (there is no instance type to
read them from), sized for a 2-core machine: head {CPU: 2, driver: 1}, worker.gpu {CPU: 1, GPU: 1},
min_workers 0 as in cluster.yaml, max_workers 2 of its 4. A local folder stands in for the EFS
mount: data/, cache/ and results/ under it, as under /mnt/cluster_storage. A study of 3 tiny
trials that each reserve one GPU goes in with `ray job submit -- python -m scaling_orchestrator run`.
They train in the Tune trial's own process (num_workers 0, the GPU asked for through
resources_per_worker, CPU torch): one process per trial where a Train worker group would start
three, which on 2 cores is the difference between about a minute and several
(tests/test_multinode.py runs worker groups on fake GPU nodes). The test sees the autoscaler
launch GPU nodes, each trial run on one (its node id in _trials/<id>.json), every row on the
shared folder, and the cluster torn down.

Only this cluster's processes are ended, by pid: every process whose command line names the
cluster's own temp folder, and their descendants. `ray stop` would end every Ray on the machine.
Cost: about 60-120 s on 2 cores (cluster start ~10 s, the job's driver ~10 s, a node launch
~5-15 s, a trial a few seconds once its node is up).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from scaling_orchestrator.orchestrator.store.results import Store

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
HEAD_TYPE = "ray.head.default"  # the fake provider's head node type (FAKE_HEAD_NODE_TYPE)
JOB_TIMEOUT_S = 300
GPU_NODES_MAX = 2  # cluster.yaml allows 4 g5.2xlarge; 2 fake nodes are what 2 cores carry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_cluster_config(gcs_address: str) -> dict:
    """cluster.yaml for the fake multinode provider: its node types and autoscaling settings,
    resources declared per type, no EC2 node_config, no SSH set-up (the nodes run here)."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    workers = {
        name: {
            "min_workers": t.get("min_workers", 0),
            "max_workers": min(t["max_workers"], GPU_NODES_MAX),
            "resources": {"CPU": 1, "GPU": 1, **t.get("resources", {})},
            "node_config": {},
        }
        for name, t in types.items()
    }
    return {
        "cluster_name": config["cluster_name"],
        "max_workers": min(config["max_workers"], GPU_NODES_MAX),
        "upscaling_speed": config["upscaling_speed"],
        "idle_timeout_minutes": config["idle_timeout_minutes"],
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            HEAD_TYPE: {"resources": {"CPU": 2, **head["resources"]}, "node_config": {}, "max_workers": 0},
            **workers,
        },
        "head_node_type": HEAD_TYPE,
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        **{
            key: []
            for key in (
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            )
        },
    }


def study(shared: Path) -> dict:
    """Three GPU trials of 1-3 layer models on a text corpus in the shared folder: seconds each."""
    from pydoc_data.topics import topics

    (shared / "data").mkdir(parents=True)
    (shared / "data" / "topics.txt").write_text("\n\n".join(topics[k] for k in sorted(topics)[:40]))
    return {
        "name": "ray-up",
        "budgets_flops": [6e9],
        "sizes_per_budget": 3,
        "model": {"depth": {"min": 1, "max": 3}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 32},
        "data": {
            "corpus": str(shared / "data" / "topics.txt"),
            "tokenizer": "byte",
            "cache_dir": str(shared / "cache"),
        },
        "train": {"batch_tokens": 256, "eval_tokens": 256, "evals_per_trial": 2, "device": "cpu"},
        "resources": {"num_workers": 0, "cpus_per_worker": 1, "resources_per_worker": {"GPU": 1}},
        "max_failures": 0,
        "storage": str(shared / "results" / "ray-up"),
    }


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, read from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # it ended while being read
            continue
        out[int(entry)] = (parent, cmdline)
    return out


def cluster_processes(marker: str) -> dict[int, str]:
    """This cluster's processes (pid -> command line): those whose command line names its temp
    folder, and their descendants (Ray workers rename themselves "ray::...", and the fake nodes
    are children of the head's monitor)."""
    table = processes()
    found = {pid for pid, (_, cmdline) in table.items() if marker in cmdline}
    while True:
        more = {pid for pid, (parent, _) in table.items() if parent in found and pid not in found}
        if not more:
            break
        found |= more
    found.discard(os.getpid())
    return {pid: table[pid][1][:100] for pid in found}


def tear_down(marker: str) -> dict[int, str]:
    """SIGTERM this cluster's processes, SIGKILL what is left after 10 s; returns what survived."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in cluster_processes(marker):
            try:
                os.kill(pid, sig)
            except OSError:  # already gone
                pass
        deadline = time.time() + wait_s
        while cluster_processes(marker) and time.time() < deadline:
            time.sleep(0.2)
    return cluster_processes(marker)


class FakeCluster:
    """A running fake autoscaling cluster: its env, addresses, shared folder and temp folder."""

    def __init__(self, temp: Path, env: dict, dashboard: str, gcs: str):
        self.temp, self.env, self.dashboard, self.gcs = temp, env, dashboard, gcs
        self.shared = temp / "shared"

    def launches(self) -> list[str]:
        """The monitor's own account of what it launched (its :event_summary: lines)."""
        log = self.temp / "session_latest" / "logs" / "monitor.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [
            line.split(":event_summary:", 1)[1] for line in text.splitlines() if ":event_summary:" in line
        ]

    def down(self) -> tuple[int, dict[int, str]]:
        """(processes ended, processes still running) after ending this cluster's processes."""
        ended = len(cluster_processes(str(self.temp)))
        return ended, tear_down(str(self.temp))


@pytest.fixture
def fake_cluster():
    if shutil.which("ray") is None or not os.path.isdir("/proc"):
        pytest.skip("the fake multinode provider needs the `ray` CLI and /proc (Linux)")
    # A short temp folder: Ray's unix sockets live under it (107-byte limit on their paths).
    temp = Path(tempfile.mkdtemp(prefix="rayup-"))
    if len(str(temp)) > 40:
        shutil.rmtree(temp)
        pytest.skip(f"the temp folder {temp} is too long for Ray's socket paths")
    gcs_port, dashboard_port = free_port(), free_port()
    gcs = f"{socket.gethostbyname(socket.gethostname())}:{gcs_port}"
    # Where `ray up` leaves the prepared config on the head (the cluster's HOME here), and where
    # the driver reads what the autoscaler may launch (orchestrator/plan/autoscaling.py).
    config = temp / "ray_bootstrap_config.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(gcs)))
    env = {
        **os.environ,
        "HOME": str(temp),
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }  # auth on, as cluster.yaml
    env.pop("RAY_ADDRESS", None)
    # every node imports this checkout, as cluster.yaml's `pip install -e ~/scaling-orchestrator`
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    start = [
        "ray",
        "start",
        "--head",
        f"--port={gcs_port}",
        f"--autoscaling-config={config}",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--resources",
        json.dumps({"driver": 1}),
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    cluster = FakeCluster(temp, env, f"http://127.0.0.1:{dashboard_port}", gcs)
    try:
        started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            pytest.skip(f"the fake multinode head did not start here: {started.stderr.strip()[-300:]}")
        yield cluster
    finally:
        _, left = cluster.down()  # a no-op after the test's own tear-down
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"still running after tear-down: {left}"


def cluster_nodes(cluster: FakeCluster) -> list[dict]:
    """ray.nodes() of the cluster, from a separate driver (this process keeps no Ray state)."""
    code = (
        "import json, ray; ray.init(address=%r, logging_level='ERROR'); "
        "print(json.dumps([{k: n[k] for k in ('NodeID', 'Alive', 'Resources')} for n in ray.nodes()]))"
        % cluster.gcs
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=cluster.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_autoscaler_launches_gpu_nodes_for_a_submitted_study(fake_cluster):
    cluster, t0 = fake_cluster, time.time()
    spec = study(cluster.shared)
    spec_file = cluster.shared / "ray-up.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    before = [n for n in cluster_nodes(cluster) if n["Alive"]]
    assert [n["Resources"].get("GPU", 0) for n in before] == [0]  # the head alone, no GPU: min_workers 0
    job = subprocess.run(
        [
            "ray",
            "job",
            "submit",
            "--address",
            cluster.dashboard,
            "--",
            sys.executable,
            "-m",
            "scaling_orchestrator",
            "run",
            str(spec_file),
            "--no-progress",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    log = job.stdout + job.stderr
    if "Failed to create runtime env for job" in log:  # the job server, not the study: Ray's own set-up
        pytest.skip(f"ray job submit could not set up the job's runtime env: {log[-300:]}")
    assert job.returncode == 0, log[-3000:]
    assert "3 completed, 0 already done, 0 diverged, 0 failed" in log, log[-3000:]

    nodes = cluster_nodes(cluster)
    gpu_nodes = {n["NodeID"] for n in nodes if n["Resources"].get("GPU", 0) >= 1}
    head = [n for n in nodes if n["Resources"].get("driver")]
    assert len(head) == 1 and 1 <= len(gpu_nodes) <= GPU_NODES_MAX  # launched, within max_workers
    launches = cluster.launches()
    assert any("of type worker.gpu" in line for line in launches), launches

    store = Store(spec["storage"])  # every row on the shared folder
    rows = store.read_table().to_pylist()
    finals = [r for r in rows if r["final"]]
    assert len(finals) == 3 and {r["status"] for r in finals} == {"ok"}
    metas = [store.read_meta(r["trial_id"]) for r in finals]
    assert {m["node_id"] for m in metas} <= gpu_nodes  # each trial on a GPU node, none on the head
    assert len(rows) == sum(len(store.read_trial(r["trial_id"])) for r in finals)

    ended, left = cluster.down()
    assert ended > 0 and not left, left  # gcs_server, raylets, monitor, dashboard, workers: all gone
    print(
        excerpt(log, nodes, launches, metas, len(rows)) + f"\ntear-down: {ended} processes ended, "
        f"{len(left)} left; {time.time() - t0:.0f} s from submit to tear-down"
    )


def excerpt(log: str, nodes: list[dict], launches: list[str], metas: list[dict], rows: int) -> str:
    """What the closing note quotes: the job's summary, the autoscaler's launches, the nodes,
    where each trial ran."""
    lines = [line for line in log.splitlines() if line.startswith("scaling:") or "succeeded" in line]
    lines += [f"autoscaler: {line.strip()}" for line in launches]
    lines += [
        f"node ...{n['NodeID'][-5:]} alive={n['Alive']} "
        f"{ {k: v for k, v in n['Resources'].items() if k in ('CPU', 'GPU', 'driver')} }"
        for n in nodes
    ]
    lines += [
        f"trial {m['trial_id']} ran on node ...{m['node_id'][-5:]} (attempts {m['attempts']})" for m in metas
    ]
    return "\n".join(lines + [f"rows on the shared folder: {rows}"])
