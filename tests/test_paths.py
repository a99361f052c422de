"""Paths of the cluster are checked on the cluster: a laptop plans a study whose corpus it does not
hold, the driver and each worker refuse a missing path in one line naming the node, and a typo
in a local spec still fails when the spec is parsed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from scaling_orchestrator.cli.study import main
from scaling_orchestrator.models.data.tokens import DataSpec
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.paths import (
    NodePathError,
    check_on_driver,
    check_on_worker,
    cluster_paths,
    corpus_file,
    plan_notes,
    storage_file,
)
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, parse_sweep
from scaling_orchestrator.orchestrator.spec.trial import Resources, TrialSpec

HOST = socket.gethostname()
GPU = {"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 1}


def spec(data: dict, resources: dict | None = None, **top) -> dict:
    return {"name": "p", "budgets_flops": [2e11, 5e11, 1.25e12], "sizes_per_budget": 3,
            "model": {"depth": {"min": 1, "max": 4}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128},
            "data": {"tokenizer": "byte", **data}, "train": {"batch_tokens": 2048},
            "resources": resources or {}, **top}


def trial(corpus: str, cache_dir: str = "", simulate: dict | None = None) -> TrialSpec:
    return TrialSpec(sweep="p", kind="scaling",
                     shape=ModelShape(n_layer=1, d_model=32, n_head=2, vocab_size=256, seq_len=32),
                     data=DataSpec(corpus=corpus, tokenizer="byte", cache_dir=cache_dir),
                     train=TrainConfig(total_tokens=4096, batch_tokens=512), budget_flops=1e9,
                     resources=Resources(**GPU), simulate=simulate)


def test_names_of_paths():
    assert corpus_file("sotu") == "" and corpus_file("pydoc") == ""
    assert corpus_file("/mnt/s/data/rows.parquet:text") == "/mnt/s/data/rows.parquet"
    assert corpus_file("~/texts") == os.path.expanduser("~/texts")
    assert storage_file("s3://bucket/r") == "" and storage_file("file:///mnt/r") == "/mnt/r"


def test_a_gpu_spec_plans_without_the_clusters_files(tmp_path):
    mount = tmp_path / "mnt" / "cluster_storage"  # absent here, as /mnt/cluster_storage on a laptop
    raw = spec({"corpus": f"{mount}/data/rows.parquet:text", "cache_dir": f"{mount}/cache"}, GPU,
               storage=f"{mount}/results/p")
    sweep = parse_sweep(raw, "s.yaml")
    assert cluster_paths(sweep.data, sweep.resources, sweep.storage) == [
        ("data.corpus", f"{mount}/data/rows.parquet"), ("data.cache_dir", f"{mount}/cache"),
        ("storage", f"{mount}/results/p")]
    [note] = plan_notes(sweep)
    assert note.startswith(f"not on this machine ({HOST}): data.corpus '{mount}/data/rows.parquet', ")
    assert "checked where the study runs: by the driver before Tune starts" in note
    assert f"note: {note}" in make_plan(sweep).render()


def test_a_trial_asking_for_a_nodes_resource_runs_off_this_machine(tmp_path):
    """resources_per_worker pins trials to the nodes that declare it: their paths are the cluster's."""
    missing = tmp_path / "mnt" / "cluster_storage" / "data" / "corpus.txt"
    sweep = parse_sweep(spec({"corpus": str(missing)}, {"resources_per_worker": {"GPU": 1}}), "s.yaml")
    assert cluster_paths(sweep.data, sweep.resources, sweep.storage) == [("data.corpus", str(missing))]


def test_a_local_spec_still_fails_fast(tmp_path):
    """In-process CPU trials run here: a missing absolute path is a typo, said with the way out."""
    with pytest.raises(SpecError) as err:
        parse_sweep(spec({"corpus": str(tmp_path / "no-such.txt")}), "s.yaml")
    assert str(err.value) == (
        f"s.yaml: data.corpus: '{tmp_path / 'no-such.txt'}' must be sotu, pydoc, a .txt/.md file or folder, "
        f"PATH:column (.parquet/.jsonl files) or file.bin (no such file or folder); "
        f"a path on a cluster is checked there "
        f"when its trials run off this machine (resources.gpus_per_worker > 0, num_workers >= 1 or "
        f"resources_per_worker)")
    with pytest.raises(
        SpecError, match=r"data.corpus: 'no/such/corpus.txt' must be .*no such file or folder\)$"
    ):
        parse_sweep(spec({"corpus": "no/such/corpus.txt"}, GPU), "s.yaml")  # relative: a typo anywhere


def test_a_gpu_spec_checks_a_corpus_it_holds(tmp_path):
    """A path that is here is checked here, cluster or not: a folder of code is refused now."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    with pytest.raises(SpecError, match="must be a folder of .txt or .md files"):
        parse_sweep(spec({"corpus": str(tmp_path / "code")}, GPU), "s.yaml")
    sweep = parse_sweep(spec({"corpus": "pydoc"}, GPU, storage="results/p"), "s.yaml")
    assert plan_notes(sweep) == []  # everything is here: nothing to note


def test_the_driver_refuses_a_missing_corpus_naming_its_node(tmp_path):
    missing = tmp_path / "mnt" / "cluster_storage" / "data" / "corpus.txt"
    with pytest.raises(ValueError) as err:
        check_on_driver([trial(str(missing))], str(tmp_path / "results"))
    assert str(err.value) == (
        f"node {HOST} (driver): data.corpus: '{missing}' must be sotu, pydoc, a .txt/.md "
        f"file or folder, PATH:column (.parquet/.jsonl files) or file.bin (no such file or folder)"
    )
    check_on_driver([trial(str(missing), simulate={"law": "chinchilla"})], str(tmp_path / "results"))


def test_the_driver_refuses_folders_it_cannot_write(tmp_path):
    (tmp_path / "taken").write_text("a file where a folder should be")
    with pytest.raises(
        ValueError,
        match=rf"^node {HOST} \(driver\): data.cache_dir: '{tmp_path}/taken/cache' "
        rf"must be a folder this node can write \('{tmp_path}/taken' is a file\)$",
    ):
        check_on_driver([trial("pydoc", cache_dir=str(tmp_path / "taken" / "cache"))], str(tmp_path / "r"))
    with pytest.raises(ValueError, match=rf"^node {HOST} \(driver\): storage: '{tmp_path}/taken/r' must be"):
        check_on_driver([trial("pydoc", cache_dir=str(tmp_path / "cache"))], str(tmp_path / "taken" / "r"))
    check_on_driver([trial("pydoc", cache_dir=str(tmp_path / "cache"))], str(tmp_path / "new" / "r"))
    assert not (tmp_path / "new").exists()  # checked, not created


def test_a_worker_refuses_a_corpus_not_mounted_on_its_node(tmp_path):
    missing = tmp_path / "mnt" / "cluster_storage" / "data" / "rows.parquet"
    with pytest.raises(NodePathError) as err:
        check_on_worker(trial(f"{missing}:text"), str(tmp_path / "results"))
    assert str(err.value) == (
        f"node {HOST} (worker): data.corpus: '{missing}' must be on every node "
        f"('{tmp_path / 'mnt'}' does not exist here: mount the shared storage)"
    )
    assert not isinstance(err.value, ValueError)  # retried by Tune: another node may hold the mount


def test_a_worker_refuses_storage_the_driver_does_not_share(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(NodePathError) as err:
        check_on_worker(trial("pydoc"), str(results), driver_host="head-node")
    assert str(err.value) == (
        f"node {HOST} (worker): storage: '{results}' must be the driver's folder, shared by "
        f"every node (no _plan.json from the driver on head-node here: mount the shared "
        f"storage)"
    )
    results.mkdir()
    (results / "_plan.json").write_text("[]")  # what run_plan writes before Tune starts
    check_on_worker(trial("pydoc"), str(results), driver_host="head-node")
    check_on_worker(trial("pydoc"), str(tmp_path / "own"), driver_host=HOST)  # same machine: same disk
    check_on_worker(trial("pydoc"), "s3://bucket/results", driver_host="head-node")  # pyarrow's to check


def test_scaling_plan_of_a_cluster_spec_on_this_machine(tmp_path, capsys):
    mount = tmp_path / "mnt" / "cluster_storage"
    path = tmp_path / "gpu.yaml"
    path.write_text(
        yaml.safe_dump(spec({"corpus": f"{mount}/data/rows.parquet:text"}, GPU, storage=f"{mount}/results/p"))
    )
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"note: not on this machine ({HOST}): data.corpus '{mount}/data/rows.parquet', storage " in out
    assert main(["plan", str(path), "--json"]) == 0


def test_the_shipped_gpu_example_plans_here():
    example = Path(__file__).resolve().parents[1] / "examples" / "gpu-cluster.yaml"
    if Path("/mnt/cluster_storage").exists():
        pytest.skip("this machine mounts /mnt/cluster_storage: the example's paths are checked here")
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

    sweep = load_sweep(example)
    assert [f for f, _ in cluster_paths(sweep.data, sweep.resources, sweep.storage)] == [
        "data.corpus",
        "data.cache_dir",
        "storage",
    ]
