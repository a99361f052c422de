"""`scaling prepare` on Ray Data: a corpus's units tokenized in parallel, one manifest written.

The pure steps are models/data/prepare.py and units.py; here they run on a pool of Ray Data actors.

The units (models/data/units.py: one per Parquet/JSONL file, or per ~64 MB of text files) go
through `map_batches` to a pool of actors (`UnitTokenizer`, a callable class: each loads the
tokenizer once and keeps it for every unit it is given), one unit a batch. Each actor reads its
unit's file with pyarrow (as `ray.data.read_parquet` would) and writes the unit's shards to the
prepared folder; only the small unit records come back to the driver, so its memory does not grow
with the corpus. A file per unit, not Ray Data's own row blocks: a unit's shard names and bytes
then follow from its file alone, whatever the worker count, and a unit finished before a kill is
not redone (its record is in the folder). The folder must be one every actor can write: shared
storage on a cluster (data.cache_dir), any local path on one machine.
"""

from __future__ import annotations

import json
import logging
import os
import resource
from pathlib import Path

from scaling_orchestrator.models.data.prepare import (
    MANIFEST,
    is_prepared,
    prepare_lock,
    prepare_units,
    prepared_folder,
)
from scaling_orchestrator.models.data.units import (
    SHARD_TOKENS,
    make_encoder,
    process_unit,
    unit_from_dict,
    unit_to_dict,
)


class UnitTokenizer:
    """A Ray Data actor: the tokenizer loaded once, then units -> shards + records."""

    def __init__(self, job: dict):
        # one actor holds one CPU: the tokenizer's own thread pool would share it with the others
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.job = job
        self.encode = make_encoder(job)
        self.folder = Path(job["folder"])

    def __call__(self, batch: dict) -> dict:
        units = [unit_from_dict(json.loads(u)) for u in batch["unit"]]
        records = [process_unit(u, self.folder, self.job, self.encode) for u in units]
        # this actor's peak memory so far, for bench/prepare.py (Linux ru_maxrss is in KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"record": [json.dumps({**r, "worker_peak_rss_bytes": peak}) for r in records]}


def tokenize_units(units, job: dict, workers: int) -> list[dict]:
    """Every unit through `workers` UnitTokenizer actors (1 CPU each); their records."""
    # Ray only here, at the edge: the pure steps run and test without it
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI prints its own summary; logs stay in Ray's folder
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [{"unit": json.dumps(unit_to_dict(u))} for u in units]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    tokenized = dataset.map_batches(
        UnitTokenizer,
        fn_constructor_kwargs={"job": job},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(items)))),
        num_cpus=1,
    )
    return [json.loads(row["record"]) for row in tokenized.take_all()]


def prepare_on_ray(spec, workers: int | None = None, shard_tokens: int = SHARD_TOKENS) -> Path:
    """The corpus of `spec` prepared (once: a current manifest is returned as it is); Ray must be
    initialised. workers: actors at a time (default: the cluster's CPUs)."""
    # Ray only here, at the edge
    import ray

    workers = workers or max(1, int(ray.cluster_resources().get("CPU", os.cpu_count() or 1)))
    folder = prepared_folder(spec)
    with prepare_lock(folder):
        if is_prepared(spec):
            return folder / MANIFEST
        return prepare_units(spec, lambda units, job: tokenize_units(units, job, workers), shard_tokens)
