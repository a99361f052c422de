"""The result store: one Parquet file per trial, rewritten atomically at every evaluation.

Layout of a results folder (a local path, or an `s3://` / `gs://` URI): docs/schema.md, "The
results folder". Names starting with `_` or `.` (`_plan.json`, `_compacted/`, `_trials/`,
`_checkpoints/`, `_ray/`, ...) are skipped by pyarrow.dataset and pandas, and DuckDB's
`*.parquet` glob never matches them (folders, or not .parquet), so `pd.read_parquet(dir)` reads
exactly the rows (a bare plan.json among the Parquet files would break those readers).

Why one file per trial, rewritten whole: a trial has one writer (its rank-0 worker), a file of
all its rows is replaced by `os.replace` (atomic on POSIX; one PUT on object stores), so a
reader sees the old file or the new one, never half of one, and never two files holding the
same (trial_id, step). A rewrite keyed by step is idempotent: after a crash the trial resumes
from its last checkpoint at step k and rows with step > k from the lost attempt are dropped
when step k+1.. is written again. Rewriting N rows per evaluation costs O(N^2) bytes in all, a
few hundred KB for the 8-64 evaluations a trial makes.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from importlib.metadata import PackageNotFoundError, version

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scaling_orchestrator.analysis.data.parquet import COMPACT, compacted_bytes, read_file, read_files
from scaling_orchestrator.analysis.data.schema import (
    COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    check_table,
    rows_to_table,
)
from scaling_orchestrator.analysis.numerics import json_text
from scaling_orchestrator.orchestrator.spec.paths import PLAN_FILE
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec

DONE_STATUSES = ("ok", "diverged")  # a final row with these ends a trial; "failed" is retried


def is_done(rows: list[dict]) -> bool:
    """A trial is done when its last row is final with status ok or diverged (failed: retried)."""
    return bool(rows) and bool(rows[-1]["final"]) and rows[-1]["status"] in DONE_STATUSES


def absolute(results_dir: str, base_dir: str) -> str:
    """results_dir with a relative path read from base_dir ("~" expanded; URIs as given):
    ("results/lr-search", "/home/me/study") -> "/home/me/study/results/lr-search"."""
    if "://" in results_dir:
        return results_dir
    path = os.path.expanduser(results_dir)
    return path if os.path.isabs(path) else os.path.join(base_dir, path)


def code_version() -> str:
    try:
        return version("scaling-orchestrator")
    except PackageNotFoundError:  # running from a source tree that was never pip-installed
        return "0+unknown"


def measurement_row(spec, m=None, *, status: str | None = None) -> dict:
    """A schema row for `spec` (a TrialSpec) at measurement `m`
    (scaling_orchestrator.models.training.loop.Measurement).

    m=None gives the placeholder row of a trial that failed before its first evaluation:
    step 0, no losses (NaN), status "failed".
    """
    counts = spec.shape.param_counts()
    nan = float("nan")
    row = {
        "sweep": spec.sweep,
        "trial_id": spec.trial_id,
        "kind": spec.kind,
        "group": spec.group,
        "size_label": spec.size_label,
        "parent_trial_id": spec.parent_trial_id,
        "backend": spec.backend,
        "branch_tokens": spec.branch_tokens,
        "round": spec.round,
        "reason": spec.reason,
        "seed": spec.train.seed,
        "n_layer": spec.shape.n_layer,
        "d_model": spec.shape.d_model,
        "n_head": spec.shape.n_head,
        "d_ff": spec.shape.d_ff,
        "seq_len": spec.shape.seq_len,
        "vocab_size": spec.shape.vocab_size,
        "params": counts["total"],
        "non_embedding_params": counts["non_embedding"],
        "embedding_params": counts["total"] - counts["non_embedding"],
        "flops_per_token": float(spec.shape.flops_per_token()),
        "budget_flops": float(spec.budget_flops),
        "step": m.step if m else 0,
        "tokens": m.tokens if m else 0,
        "unique_tokens": spec.unique_tokens or None,  # plan/data.py: from the prepared manifest
        "epochs": m.tokens / spec.unique_tokens if m and spec.unique_tokens else None,
        "flops": float(m.flops) if m else 0.0,
        "flops_6n": float(m.flops_6n) if m else 0.0,
        "flops_convention": "chinchilla_appendix_f",
        "train_loss": float(m.train_loss) if m else nan,
        "val_loss": float(m.val_loss) if m else nan,
        "val_bpb": float(m.val_bpb) if m else nan,
        "lr": float(spec.train.lr),
        "batch_tokens": spec.train.batch_tokens,
        "schedule": spec.train.schedule,
        "wall_seconds": float(m.wall_seconds) if m else 0.0,
        "tokens_per_second": float(m.tokens_per_second) if m else 0.0,
        "metrics": "",
        "final": bool(m.final) if m else True,
        "status": status or (m.status if m else "failed"),
        "schema_version": SCHEMA_VERSION,
        "code_version": code_version(),
    }
    # a trainer of the user's own may report its params, flops_per_token and other numbers
    # (orchestrator/backends/metrics.py): they replace the planned counts
    overrides = getattr(m, "overrides", None) or {}
    row.update(overrides)
    if "params" in overrides:  # the embeddings are the plan's, the rest the trainer's count
        row["non_embedding_params"] = overrides["params"] - row["embedding_params"]
    return row


def read_results(results_dir: str) -> pa.Table:
    """Every row of a results folder (a path, or an s3:// / gs:// URI) as one Arrow table, its
    columns those of scaling_orchestrator.analysis.data.schema (docs/schema.md): what `scaling
    fit` reads, and `.to_pandas()` away from a DataFrame. A local folder that does not exist is a
    FileNotFoundError (nothing has run there); one with no rows gives an empty table."""
    if "://" not in results_dir and not os.path.isdir(os.path.expanduser(results_dir)):
        raise FileNotFoundError(f"results folder {results_dir!r}: not found (nothing has run there)")
    return Store(results_dir, create=False).read_table()


class Store:
    """Reads and writes one results folder. Cheap to build; safe to pickle (holds only a URI)."""

    def __init__(self, results_dir: str, *, create: bool = True):
        """create=False leaves a missing folder missing until the first write: `scaling run`
        reads what is done and checks the cluster before it leaves anything on disk."""
        if "://" in results_dir:
            self.uri = results_dir.rstrip("/")
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        else:
            self.uri = self.root = os.path.abspath(os.path.expanduser(results_dir))
            self.fs = pafs.LocalFileSystem()
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        if create:
            self.fs.create_dir(self.root, recursive=True)

    def __reduce__(self):  # ship the URI, rebuild the filesystem on the other side
        return (Store, (self.uri,))

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- bytes -------------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes) -> None:
        """Atomic: a hidden temp file in the same folder, then os.replace; one PUT elsewhere."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if not self.local:
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def write_json(self, path: str, obj) -> None:
        self.write_bytes(path, json_text(obj, indent=1, sort_keys=True).encode())

    def read_json(self, path: str):
        data = self.read_bytes(path)
        return None if data is None else json.loads(data)

    # -- rows --------------------------------------------------------------------------------
    def trial_file(self, trial_id: str) -> str:
        return self.path(f"{trial_id}.parquet")

    def read_trial(self, trial_id: str) -> list[dict]:
        data = self.read_bytes(self.trial_file(trial_id))
        if data is None:
            return []
        return check_table(read_file(pa.BufferReader(data)), self.trial_file(trial_id)).to_pylist()

    def _write_trial(self, trial_id: str, rows: list[dict]) -> None:
        rows = sorted(rows, key=lambda r: r["step"])
        buf = io.BytesIO()
        pq.write_table(rows_to_table([{c: r[c] for c in COLUMNS} for r in rows]), buf)
        self.write_bytes(self.trial_file(trial_id), buf.getvalue())

    def write_row(self, row: dict) -> None:
        """Upsert one evaluation. Rows at step >= row's step belong to an attempt that crashed
        after them (this attempt resumed from an earlier checkpoint) and are replaced; a
        "failed" mark left by that attempt is lifted, as the trial is running again."""
        kept = []
        for old in self.read_trial(row["trial_id"]):
            if old["step"] >= row["step"]:
                continue
            if old["status"] == "failed":
                if old["step"] == 0:  # placeholder of a trial that failed before evaluating
                    continue
                old = {**old, "status": "ok", "final": False}
            kept.append(old)
        self._write_trial(row["trial_id"], kept + [row])

    def mark_failed(self, spec) -> None:
        """The trial raised for good: its last row becomes final with status "failed" (the row
        records where it stopped); with no rows, a step-0 placeholder row says it failed."""
        rows = self.read_trial(spec.trial_id)
        if is_done(rows):
            return  # it finished before the failure was noticed
        if rows:
            rows[-1] = {**rows[-1], "final": True, "status": "failed"}
        else:
            rows = [measurement_row(spec, None)]
        self._write_trial(spec.trial_id, rows)

    def row_files(self) -> list[str]:
        """The trials' row files (a trial that has written at least one row has one)."""
        selector = pafs.FileSelector(self.root, recursive=False, allow_not_found=True)
        return [
            i.path
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File
            and i.base_name.endswith(".parquet")
            and not i.base_name.startswith((".", "_"))
        ]

    def read_table(self) -> pa.Table:
        """Every row of every trial, schema-checked (an empty table when nothing ran)."""
        files = self.row_files()
        if not files:
            return SCHEMA.empty_table()
        # one schema for every file: a folder may hold files of an older schema_version
        if self.local:  # the compacted rows stand in for the files they still match
            table = read_files(files, schema=SCHEMA, folder=self.root)
        else:
            table = read_files(files, schema=SCHEMA, filesystem=self.fs)
        return check_table(table, self.uri)

    def compact(self) -> None:
        """_compacted/rows.parquet: the row files' rows in one file, which later reads take the
        unchanged files from (analysis/data/parquet.py). Local folders; a failure loses nothing."""
        files = self.row_files()
        try:
            if self.local and files:
                self.write_bytes(self.path(COMPACT), compacted_bytes(self.root, files))
        except (pa.ArrowException, OSError):
            pass

    def done_trial_ids(self) -> set[str]:
        """Trials with a final row whose status is ok or diverged (failed ones run again)."""
        table = self.read_table()
        done = set()
        for tid, final, status in zip(
            table["trial_id"].to_pylist(), table["final"].to_pylist(), table["status"].to_pylist()
        ):
            if final and status in DONE_STATUSES:
                done.add(tid)
        return done

    # -- plan and per-trial metadata ------------------------------------------------------------
    def write_plan(self, trials, spec: dict | None = None) -> None:
        """_plan.json: {"spec": the sweep spec as written, "trials": [...]}. The trials of an
        earlier plan of the same study that have rows stay listed after these (a study run
        round by round, one `scaling next` spec at a time, is every round's trials); spec None
        keeps the file's."""
        trials = list(trials)
        earlier, earlier_spec = self._read_plan_file()
        ran = {os.path.basename(f)[: -len(".parquet")] for f in self.row_files()}
        ids, sweeps = {t.trial_id for t in trials}, {t.sweep for t in trials}
        trials += [t for t in earlier if t.trial_id in ran and t.trial_id not in ids
                   and (not sweeps or t.sweep in sweeps)]
        self.write_json(self.path(PLAN_FILE), {"spec": spec if spec is not None else earlier_spec,
                                               "trials": [t.to_dict() for t in trials]})

    def read_plan(self) -> list:
        """The planned trials (every round's, for a study run round by round)."""
        return self._read_plan_file()[0]

    def read_plan_spec(self) -> dict | None:
        """The sweep spec the plan came from, as written (None for a plan file without one)."""
        return self._read_plan_file()[1]

    def _read_plan_file(self) -> tuple[list, dict | None]:
        """(trials, spec); a plan file of older versions is a bare list of trials."""
        saved = self.read_json(self.path(PLAN_FILE))
        if isinstance(saved, dict):
            return [TrialSpec.from_dict(d) for d in saved.get("trials") or []], saved.get("spec")
        return [TrialSpec.from_dict(d) for d in saved or []], None

    def meta_file(self, trial_id: str) -> str:
        return self.path("_trials", f"{trial_id}.json")

    def read_meta(self, trial_id: str) -> dict:
        return self.read_json(self.meta_file(trial_id)) or {}

    def update_meta(self, trial_id: str, **fields) -> dict:
        meta = {**self.read_meta(trial_id), **fields, "trial_id": trial_id}
        self.write_json(self.meta_file(trial_id), meta)
        return meta

    def log_file(self, trial_id: str) -> str:
        return self.path("_trials", f"{trial_id}.log")

    def append_log(self, trial_id: str, line: str) -> None:
        """Append-only log; locally a plain append, elsewhere read-modify-write (one writer)."""
        if self.local:
            self.fs.create_dir(self.path("_trials"), recursive=True)
            with open(self.log_file(trial_id), "a") as f:
                f.write(line.rstrip("\n") + "\n")
        else:
            old = self.read_bytes(self.log_file(trial_id)) or b""
            self.write_bytes(self.log_file(trial_id), old + line.rstrip("\n").encode() + b"\n")

    # -- checkpoints of in-process trials ------------------------------------------------------
    def save_checkpoint(self, trial_id: str, local_dir: str, step: int) -> None:
        """Copy a checkpoint folder to _checkpoints/<id>/step-<k>, then point LATEST at it
        (atomic), then drop older copies: a crash at any point leaves a complete LATEST."""
        base = self.path("_checkpoints", trial_id)
        name = f"step-{step:09d}"
        self.fs.create_dir(f"{base}/{name}", recursive=True)
        pafs.copy_files(
            local_dir,
            f"{base}/{name}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=self.fs,
        )
        self.write_bytes(f"{base}/LATEST", name.encode())
        for info in self.fs.get_file_info(pafs.FileSelector(base)):
            if info.type == pafs.FileType.Directory and info.base_name != name:
                self.fs.delete_dir(info.path)

    def load_checkpoint(self, trial_id: str, local_dir: str) -> str | None:
        """Copy the LATEST checkpoint into local_dir; None when the trial never saved one."""
        base = self.path("_checkpoints", trial_id)
        name = self.read_bytes(f"{base}/LATEST")
        if name is None:
            return None
        os.makedirs(local_dir, exist_ok=True)
        pafs.copy_files(
            f"{base}/{name.decode()}",
            local_dir,
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        return local_dir

    def drop_checkpoint(self, trial_id: str) -> None:
        """A finished trial's checkpoint is no longer needed to resume it."""
        try:
            self.fs.delete_dir(self.path("_checkpoints", trial_id))
        except (FileNotFoundError, OSError):
            pass

    # -- a trunk's checkpoints, kept for its branches -----------------------------------------
    def kept_checkpoint_dir(self, trial_id: str, tokens: int) -> str:
        return self.path("_branch_points", trial_id, f"tokens-{int(tokens):012d}")

    def keep_checkpoint(self, trial_id: str, local_dir: str, tokens: int) -> None:
        """Copy a trunk's checkpoint at `tokens` where its branches find it. The READY marker
        is written last, so a branch never starts from a half-copied folder."""
        target = self.kept_checkpoint_dir(trial_id, tokens)
        self.fs.create_dir(target, recursive=True)
        pafs.copy_files(
            local_dir, target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs
        )
        self.write_bytes(f"{target}/READY", str(int(tokens)).encode())

    def has_kept_checkpoint(self, trial_id: str, tokens: int) -> bool:
        return self.read_bytes(f"{self.kept_checkpoint_dir(trial_id, tokens)}/READY") is not None

    def load_kept_checkpoint(self, trial_id: str, tokens: int, local_dir: str) -> str | None:
        """Copy the trunk's checkpoint at `tokens` into local_dir; None when it is not there (yet)."""
        if not self.has_kept_checkpoint(trial_id, tokens):
            return None
        os.makedirs(local_dir, exist_ok=True)
        pafs.copy_files(
            self.kept_checkpoint_dir(trial_id, tokens),
            local_dir,
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        os.remove(os.path.join(local_dir, "READY"))
        return local_dir
