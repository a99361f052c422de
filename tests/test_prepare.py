"""Prepared corpora without Ray: sharded Parquet/JSONL, tokenizer.json, the text-hash split,
resume after a kill, .bin layouts, and the memory-mapped shards a trial reads."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scaling_orchestrator.models.data import units as units_module
from scaling_orchestrator.models.data.binfile import HEADER_INT32, MODDED_MAGIC
from scaling_orchestrator.models.data.prepare import prepare_local, prepared_folder
from scaling_orchestrator.models.data.shards import ShardedTokens
from scaling_orchestrator.models.data.tokens import DataSpec, load_prepared, prepare_data
from scaling_orchestrator.models.data.units import is_val

WORDS = "scaling laws predict the loss of language models from parameters and tokens".split()


def documents(n: int = 60) -> list[str]:
    return [f"doc {i}: " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 13)) for i in range(n)]


def parquet_shards(folder, docs: list[str], shards: int):
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.array(docs, dtype=object), shards)):
        pq.write_table(
            pa.table({"text": list(part), "id": list(range(len(part)))}), folder / f"{k:03d}.parquet"
        )
    return folder


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(documents(), trainer=trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer.save(str(path))
    return str(path)


def test_prepared_ids_are_the_tokenizer_files_ids_plus_eos(tmp_path, tokenizer_file):
    from tokenizers import Tokenizer

    docs = documents()
    corpus = f"{parquet_shards(tmp_path / 'shards', docs, 3) / '*.parquet'}:text"
    spec = DataSpec(corpus=corpus, tokenizer=tokenizer_file, val_fraction=0.2, cache_dir=str(tmp_path / "c"))
    data = prepare_data(spec)
    reference = Tokenizer.from_file(tokenizer_file)
    eos = reference.token_to_id("<|endoftext|>")
    expect = {"train": [], "val": []}
    for doc in docs:
        expect["val" if is_val(doc, 0.2) else "train"] += reference.encode(doc).ids + [eos]
    assert data.vocab_size == spec.effective_vocab_size == reference.get_vocab_size()
    assert (
        np.asarray(data.train).tolist() == expect["train"] and np.asarray(data.val).tolist() == expect["val"]
    )
    manifest = json.loads((prepared_folder(spec) / "manifest.json").read_text())
    assert manifest["separator"] == {"id": eos} and manifest["dtype"] == "uint16"
    assert manifest["splits"]["train"]["documents"] + manifest["splits"]["val"]["documents"] == len(docs)


def test_split_and_tokens_unchanged_by_resharding(tmp_path):
    docs = documents()
    datas = []
    for shards in (1, 4):
        corpus = f"{parquet_shards(tmp_path / f's{shards}', docs, shards)}:text"
        datas.append(prepare_data(DataSpec(corpus=corpus, tokenizer="byte", cache_dir=str(tmp_path / "c"))))
    for split in ("train", "val"):
        np.testing.assert_array_equal(
            np.asarray(getattr(datas[0], split)), np.asarray(getattr(datas[1], split))
        )
    assert isinstance(datas[1].train, ShardedTokens) and len(datas[1].train.shards) == 4


def test_jsonl_glob_and_a_separate_val_corpus(tmp_path):
    docs = documents(20)
    for k in range(2):
        lines = [json.dumps({"text": d, "n": i}) for i, d in enumerate(docs[k::2])]
        (tmp_path / f"part{k}.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.txt").write_text("held out one\n\nheld out two")
    spec = DataSpec(
        corpus=f"{tmp_path}/*.jsonl:text",
        tokenizer="byte",
        val_corpus=str(tmp_path / "val.txt"),
        cache_dir=str(tmp_path / "c"),
    )
    data = prepare_data(spec)
    assert bytes(np.asarray(data.val, np.uint8)) == b"held out one\n\nheld out two\n\n"
    assert len(data.train) == sum(len(d) + 2 for d in docs)


def test_a_prepare_killed_half_way_reruns_to_identical_shards(tmp_path, monkeypatch):
    corpus = f"{parquet_shards(tmp_path / 'shards', documents(), 4)}:text"
    clean = DataSpec(corpus=corpus, tokenizer="bpe", vocab_size=300, cache_dir=str(tmp_path / "clean"))
    killed = DataSpec(corpus=corpus, tokenizer="bpe", vocab_size=300, cache_dir=str(tmp_path / "killed"))
    prepare_local(clean, shard_tokens=200)
    real, done = units_module.process_unit, []

    def dies_after_two(unit, folder, job, encode=None):
        if len(done) == 2:
            raise KeyboardInterrupt("killed")
        done.append(unit.index)
        return real(unit, folder, job, encode)

    monkeypatch.setattr("scaling_orchestrator.models.data.prepare.process_unit", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare_local(killed, shard_tokens=200)
    assert not (prepared_folder(killed) / "manifest.json").exists()
    monkeypatch.setattr("scaling_orchestrator.models.data.prepare.process_unit", real)
    prepare_local(killed, shard_tokens=200)

    def shards(spec):
        return {p.name: p.read_bytes() for p in prepared_folder(spec).glob("*.npy")}

    assert len(shards(clean)) > 4 and shards(killed) == shards(clean)
    assert load_prepared(killed).fingerprint == load_prepared(clean).fingerprint


def test_sharded_tokens_index_like_one_array():
    parts = [
        np.arange(0, 5, dtype=np.uint16),
        np.arange(5, 7, dtype=np.uint16),
        np.arange(7, 20, dtype=np.uint16),
    ]
    tokens, whole = ShardedTokens(parts), np.arange(20, dtype=np.uint16)
    index = np.array([[3, 4, 5, 6, 7], [0, 1, 2, 3, 4], [15, 16, 17, 18, 19]])
    np.testing.assert_array_equal(tokens[index], whole[index])
    np.testing.assert_array_equal(tokens[4:9], whole[4:9])
    assert len(tokens) == 20 and tokens.max() == 19


def _spec(path, **kw) -> DataSpec:
    return DataSpec(corpus=str(path), tokenizer="bpe", val_fraction=0.1, **kw)


def test_bin_dtype_is_stated_or_read_from_a_header_never_guessed(tmp_path):
    ids = (np.arange(1000) % 300).astype(np.uint32)
    wide = tmp_path / "wide.bin"
    ids.tofile(wide)  # uint32 ids of a 50k vocabulary would read as [id, 0, id, 0, ...]
    with pytest.raises(ValueError, match="every second uint16 .* data.token_dtype: uint32 reads it"):
        prepare_data(_spec(wide, vocab_size=50_000))
    data = prepare_data(_spec(wide, vocab_size=50_000, token_dtype="uint32"))
    assert data.train.dtype == np.uint32 and np.concatenate([data.train, data.val]).tolist() == ids.tolist()
    header = np.zeros(HEADER_INT32, np.int32)
    header[:3] = [MODDED_MAGIC, 1, 1000]
    modded = tmp_path / "fineweb_train_000001.bin"
    modded.write_bytes(header.tobytes() + ids.astype(np.uint16).tobytes())
    data = prepare_data(_spec(modded, vocab_size=65536))  # its header is not read as tokens
    assert np.concatenate([data.train, data.val]).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="data.token_dtype uint16 as its header says"):
        prepare_data(_spec(modded, vocab_size=65536, token_dtype="uint32"))
    modded.write_bytes(header.tobytes() + ids.astype(np.uint16).tobytes()[:-2])
    with pytest.raises(ValueError, match="modded-nanogpt shard of 1000 tokens .* truncated"):
        prepare_data(_spec(modded, vocab_size=65536))
    with pytest.raises(ValueError, match="token_dtype='int8'"):
        DataSpec(corpus=str(wide), token_dtype="int8")


def test_tokenizer_file_errors_name_the_field(tmp_path, tokenizer_file):
    with pytest.raises(ValueError, match="DataSpec.eos_token='<eot>': must be a token of"):
        prepare_data(DataSpec(corpus="pydoc", tokenizer=tokenizer_file, eos_token="<eot>"))
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="must be a Hugging Face tokenizer.json"):
        DataSpec(corpus="pydoc", tokenizer=str(tmp_path / "tokenizer.json")).effective_vocab_size


def test_run_prepares_a_small_corpus_and_prepare_prints_its_manifest_last(tmp_path, capsys):
    """Then the plan knows the data: epochs per trial, a warning when they repeat it, and the
    rows carry unique_tokens and epochs."""
    import yaml

    from scaling_orchestrator.cli.prepare import ensure_prepared
    from scaling_orchestrator.cli.study import main
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep
    from scaling_orchestrator.orchestrator.store.results import measurement_row

    corpus = parquet_shards(tmp_path / "shards", documents(), 2)
    spec = {
        "name": "p",
        "budgets_flops": [2e11, 5e11, 1.25e12],
        "sizes_per_budget": 3,
        "model": {"depth": {"min": 1, "max": 4}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 16},
        "data": {"corpus": f"{corpus}:text", "tokenizer": "byte", "cache_dir": str(tmp_path / "c")},
        "train": {"batch_tokens": 2048},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    manifest = ensure_prepared(load_sweep(path))  # run/demo's hook: small, so in this process
    assert manifest == prepared_folder(load_sweep(path).data) / "manifest.json" and manifest.is_file()
    assert main(["prepare", str(path)]) == 0  # prepared already: no Ray started
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"manifest: {manifest}" and "train 5" in lines[-2]
    plan = make_plan(load_sweep(path))
    unique = json.loads(manifest.read_text())["splits"]["train"]["tokens"]
    trial = plan.trials[-1]
    assert (
        trial.unique_tokens == unique and plan.trial_row(trial)["epochs"] == trial.train.total_tokens / unique
    )
    text = plan.render()
    assert f"data: {unique / 1e3:.3g}k unique training tokens" in text
    assert f"warning: {len(plan.trials)} of {len(plan.trials)} trials repeat their data" in text
    row = measurement_row(trial, None)
    assert row["unique_tokens"] == unique and row["epochs"] is None


def test_data_constrained_fit_reads_the_rows_unique_tokens_by_default():
    from argparse import Namespace

    from scaling_orchestrator.analysis.data.schema import SCHEMA
    from scaling_orchestrator.cli.analysis import _rows_unique_tokens

    ours, other = SCHEMA.empty_table(), pa.table({"tokens": [1]})
    assert (
        _rows_unique_tokens(Namespace(law="data_constrained", source="rows.parquet"), ours) == "unique_tokens"
    )
    assert _rows_unique_tokens(Namespace(law="data_constrained", source="runs.csv"), other) is None
    assert _rows_unique_tokens(Namespace(law="chinchilla", source="rows.parquet"), ours) is None
