"""`scaling prepare` on Ray Data: the same shards as one process, whatever the worker count;
a current manifest is not redone; the CLI's last line names it."""

from __future__ import annotations

import pytest
from test_prepare import documents, parquet_shards

from scaling_orchestrator.models.data.prepare import prepare_local, prepared_folder
from scaling_orchestrator.models.data.tokens import DataSpec, load_prepared


@pytest.mark.slow  # Ray Data actors on the session's local Ray
def test_ray_data_shards_equal_one_process_shards(tmp_path, local_ray):
    from scaling_orchestrator.orchestrator.execution.prepare_data import prepare_on_ray

    corpus = f"{parquet_shards(tmp_path / 'shards', documents(200), 4)}/*.parquet:text"
    spec = dict(corpus=corpus, tokenizer="bpe", vocab_size=300, val_fraction=0.1)
    alone = DataSpec(**spec, cache_dir=str(tmp_path / "alone"))
    on_ray = DataSpec(**spec, cache_dir=str(tmp_path / "ray"))
    prepare_local(alone, shard_tokens=500)
    manifest = prepare_on_ray(on_ray, workers=2, shard_tokens=500)

    def shards(spec):
        return {p.name: p.read_bytes() for p in prepared_folder(spec).glob("*.npy")}

    assert len(shards(alone)) >= 8 and shards(on_ray) == shards(alone)
    assert load_prepared(on_ray).fingerprint == load_prepared(alone).fingerprint
    before = manifest.stat().st_mtime_ns
    assert prepare_on_ray(on_ray, workers=2) == manifest and manifest.stat().st_mtime_ns == before
