"""Many small Parquet files (a results folder: one per trial) into one Arrow table.

Not pyarrow.dataset: importing it imports pandas, 0.6 s of every `scaling` command on an idle
2-core machine (1.8 s under load) for a reader that gives the same rows. The files are read
on READ_THREADS threads (Parquet decoding releases the GIL), each file on one thread (pyarrow's
own pool per small file cost more CPU than it saved: 1.3-1.7 s against 1.0-1.3 s of CPU for a
1000-file folder, busy 2-core machine).

The compacted rows (COMPACT, `_compacted/rows.parquet`; the Store writes it as a study run
ends): every row file's rows in one file, and in its metadata each file's name, size, CRC-32
and row count. A local file whose bytes still match is taken from it rather than decoded:
reading the bytes and their CRC costs 0.05 s for 1000 small files, decoding them 0.9 s (a
1000-trial folder, idle 2-core machine). A file written since, or changed, is read itself; one
deleted is not listed, so it is not read. The same rows come back either way, in the same order.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

READ_THREADS = 2
COMPACT = "_compacted/rows.parquet"  # in a folder: DuckDB's `*.parquet` glob matches `_` files
FILES_KEY = b"scaling.row_files"  # [[name relative to the folder, size, crc32, rows], ...]


def read_files(files, *, schema: pa.Schema | None = None, filesystem=None, columns=None,
               folder: str | None = None) -> pa.Table:
    """The files' rows in the order given. schema: every file conformed to it, as
    pyarrow.dataset reads with a schema (its fields in its order; a field a file lacks is
    null, a column the schema lacks is dropped, types cast); columns: only those fields of
    it. Without a schema: the union of the files' columns, null where a file lacks one.
    filesystem: a pyarrow filesystem the paths are on (default: local paths). folder: the local
    folder whose compacted rows (COMPACT) stand in for the files they still match."""
    if columns is not None and schema is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)

    known = Compacted.at(folder) if folder is not None and filesystem is None else None

    def read(path) -> pa.Table:
        if filesystem is None:
            return read_file(str(path), schema)
        with filesystem.open_input_file(path) as source:
            return read_file(source, schema)

    if known is not None:  # one thread: a file's bytes and CRC (0.09 s for 1000, 0.3 s on two)
        tables = known.tables([str(f) for f in files], schema)
    else:
        with ThreadPoolExecutor(READ_THREADS) as readers:
            tables = list(readers.map(read, files))
    if schema is not None:
        table = pa.concat_tables(tables) if tables else schema.empty_table()
    else:
        table = pa.concat_tables(tables, promote_options="default")
    # one chunk per column, not one per file: a filter or cast of a 1,000-file table otherwise
    # runs per chunk and column (0.57 s against 0.03 s for a fit's row selections, measured)
    return table.combine_chunks()


def read_file(source, schema: pa.Schema | None = None) -> pa.Table:
    """One Parquet file (a path or an open pyarrow file), conformed to schema when given.
    A local path is read without pre-buffering, which coalesces reads for object stores:
    1000 small files, median CPU 1.1 s -> 0.97 s (busy 2-core machine)."""
    with pq.ParquetFile(source, pre_buffer=not isinstance(source, str)) as parquet:
        if schema is None:
            return parquet.read(use_threads=False)
        names = set(parquet.schema_arrow.names)
        wanted = [n for n in schema.names if n in names]
        return conform(parquet.read(columns=wanted, use_threads=False), schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with exactly the schema's fields: cast where present, null where absent."""
    arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names
              else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


class Compacted:
    """A folder's compacted rows (module doc): rows(path) gives a row file's rows from them
    when its bytes match, else reads the file."""

    def __init__(self, folder: str, table: pa.Table, listing: list):
        self.folder, self.table, self.at_row, self._conformed = folder, table, {}, None
        offset = 0
        for name, size, crc, rows in listing:
            self.at_row[name] = (int(size), int(crc), offset, int(rows))
            offset += int(rows)

    @classmethod
    def at(cls, folder: str) -> Compacted | None:
        """The folder's compacted rows, or None without a readable COMPACT file."""
        path = os.path.join(folder, COMPACT)
        if not os.path.isfile(path):
            return None
        try:
            table = read_file(path)
            listing = json.loads((table.schema.metadata or {})[FILES_KEY])
        except (pa.ArrowException, OSError, KeyError, ValueError):
            return None  # an unreadable or foreign file: every row file is read itself
        return cls(folder, table.replace_schema_metadata(None), listing)

    def tables(self, paths: list[str], schema: pa.Schema | None = None) -> list[pa.Table]:
        """Each file's rows: its slice of the compacted rows where its bytes match, else the file
        read; [all of them] when every file matches, in the compacted order, and none is missing."""
        tables, offsets = [], []
        for path in paths:
            with open(path, "rb") as handle:
                data = handle.read()
            entry = self.at_row.get(os.path.relpath(path, self.folder))
            if entry is not None and entry[0] == len(data) and entry[1] == zlib.crc32(data):
                tables.append(self.conformed(schema).slice(entry[2], entry[3]))
                offsets.append(entry[2])
            else:
                tables.append(read_file(pa.BufferReader(data), schema))
                offsets.append(-1)
        whole = [entry[2] for entry in self.at_row.values()]
        return [self.conformed(schema)] if offsets == whole and paths else tables

    def conformed(self, schema: pa.Schema | None) -> pa.Table:
        """The compacted rows, conformed to schema once (not once per file)."""
        if schema is None:
            return self.table
        if self._conformed is None or not self._conformed.schema.equals(schema):
            self._conformed = conform(self.table, schema)
        return self._conformed


def compacted_bytes(folder: str, files) -> bytes:
    """COMPACT's bytes for the row files (local paths under folder): their rows, read as
    read_files reads them (the union of their columns), with the listing in the metadata."""
    tables, listing = [], []
    for path in sorted(str(f) for f in files):
        with open(path, "rb") as handle:
            data = handle.read()
        table = read_file(pa.BufferReader(data))
        tables.append(table)
        listing.append([os.path.relpath(path, folder), len(data), zlib.crc32(data), table.num_rows])
    table = pa.concat_tables(tables, promote_options="default").combine_chunks()
    table = table.replace_schema_metadata({FILES_KEY: json.dumps(listing).encode()})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()
