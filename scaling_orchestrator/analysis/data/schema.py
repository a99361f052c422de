"""The result-row schema: one row per evaluation of one trial, long format, flat columns.

The consumer owns the contract (DESIGN.md): the orchestrator writes rows with this schema and
the analysis reads them; `models/` produces the measurements without importing this module, so
`analysis/` needs neither torch nor ray.

Units are part of the names or of the docs below. Losses are natural-log cross-entropy per token
(nats); `val_bpb` is bits per UTF-8 byte of validation text (tokenizer independent).
`flops` is the exact training count of Chinchilla Appendix F (forward + 2x backward, embeddings
and logits included) at `tokens`; `flops_6n` is Kaplan's 6 * non_embedding_params * tokens,
so a fit can pick either convention without recomputing anything.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 4
# What each version added, so a reader of an older table knows what to fill in. Version 1 tables
# (no group, size_label, parent_trial_id or backend) stay readable: check_table fills the
# defaults below, and "no held-out group" sends the back-test to its largest-budget rule.
# Version 3: branch_tokens (a branch's start in its trunk), round and reason (an adaptive study's).
# Version 4: metrics (a trainer of the user's own: its other reported numbers, a JSON object), and
# unique_tokens / epochs (the data a trial saw; null: unknown).
ADDED_IN = {2: {"group": "", "size_label": "", "parent_trial_id": "", "backend": "torch"},
            3: {"branch_tokens": 0, "round": 0, "reason": ""},
            4: {"metrics": "", "unique_tokens": None, "epochs": None}}

# Exact FLOP convention recorded in every row (never implied).
FLOPS_CONVENTION = "chinchilla_appendix_f"

# status values: "ok" (an evaluation of a healthy run), "diverged" (loss turned NaN/inf; the
# trial stopped), "failed" (the trial raised; the row records where it stopped).
STATUSES = ("ok", "diverged", "failed")
KINDS = ("scaling", "hparam", "shape")
# group values the planner writes: "" (an ordinary trial), HELD_OUT (a budget kept for the
# back-test), TRUNK (a constant-LR run that branches start from: its rows are never fit points)
# and BRANCH (a cooldown from a trunk's checkpoint: an end-of-training point like any run; a
# branch on a held-out budget is HELD_OUT, with a parent_trial_id).
HELD_OUT = "held_out"
TRUNK = "trunk"
BRANCH = "branch"

FIELDS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("sweep", pa.string(), "sweep name from the spec"),
    ("trial_id", pa.string(), "content hash of the trial's spec (stable across re-runs)"),
    ("kind", pa.string(), "'scaling' (IsoFLOP grid), 'hparam' (hyperparameter search) or 'shape' "
     "(a shape study: not IsoFLOP points)"),
    ("group", pa.string(), "'' for an ordinary trial, 'held_out' for a back-test budget, or a "
     "trial kind's own role"),
    ("size_label", pa.string(), "the planner's name for the model size, e.g. 'd4' (depth 4 of the dial)"),
    ("parent_trial_id", pa.string(), "the trial this one continues from ('' unless a branch)"),
    ("backend", pa.string(), "'torch' (the built-in loop), 'command' or 'python' (a trainer of the user's "
     "own) or 'simulate' (drawn from a law: not a measurement)"),
    ("branch_tokens", pa.int64(), "a branch: the trunk's token count it started from (0 otherwise)"),
    ("round", pa.int64(), "an adaptive study: the round that chose this trial (0 otherwise)"),
    ("reason", pa.string(), "an adaptive study: why this trial was chosen ('' otherwise)"),
    ("seed", pa.int64(), "training seed"),
    ("n_layer", pa.int64(), "Transformer blocks"),
    ("d_model", pa.int64(), "residual width"),
    ("n_head", pa.int64(), "attention heads"),
    ("d_ff", pa.int64(), "MLP hidden width"),
    ("seq_len", pa.int64(), "context length in tokens"),
    ("vocab_size", pa.int64(), "tokenizer vocabulary"),
    ("params", pa.int64(), "total trainable parameters (embeddings included)"),
    ("non_embedding_params", pa.int64(), "params minus token/position embeddings and untied head"),
    ("embedding_params", pa.int64(), "token + position embeddings (+ untied head)"),
    ("flops_per_token", pa.float64(), "exact training FLOPs per token (Chinchilla App. F)"),
    ("budget_flops", pa.float64(), "the IsoFLOP budget this trial was planned for"),
    ("step", pa.int64(), "optimizer steps completed"),
    ("tokens", pa.int64(), "training tokens consumed at this evaluation"),
    ("unique_tokens", pa.int64(), "tokens of the training split the trial samples from (its prepared "
     "manifest); null when unknown"),
    ("epochs", pa.float64(), "tokens / unique_tokens: passes over the training data so far; null "
     "when unknown"),
    ("flops", pa.float64(), "exact training FLOPs spent at this evaluation"),
    ("flops_6n", pa.float64(), "Kaplan 6 * non_embedding_params * tokens"),
    ("flops_convention", pa.string(), "convention of `flops`"),
    ("train_loss", pa.float64(), "mean training loss over the last interval, nats/token"),
    ("val_loss", pa.float64(), "held-out loss, nats/token"),
    ("val_bpb", pa.float64(), "held-out bits per UTF-8 byte"),
    ("lr", pa.float64(), "peak learning rate of the trial"),
    ("batch_tokens", pa.int64(), "tokens per optimizer step"),
    ("schedule", pa.string(), "learning-rate schedule name"),
    ("wall_seconds", pa.float64(), "training wall time so far, seconds"),
    ("tokens_per_second", pa.float64(), "training throughput over the run so far"),
    ("metrics", pa.string(), "a trainer's other reported numbers as a JSON object ('' for the built-in "
     "loop)"),
    ("final", pa.bool_(), "True on the last row of a finished (or stopped) trial"),
    ("status", pa.string(), "one of STATUSES"),
    ("schema_version", pa.int32(), "SCHEMA_VERSION of the writer"),
    ("code_version", pa.string(), "package version of the writer"),
)

SCHEMA = pa.schema([pa.field(name, dtype) for name, dtype, _ in FIELDS])
COLUMNS = tuple(name for name, _, _ in FIELDS)
DOCS = {name: doc for name, _, doc in FIELDS}


class SchemaError(ValueError):
    """A results table that does not match the row schema."""


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Build a schema-conformant table; a missing or extra key is a one-line error. A row of an
    older schema_version may lack the columns later versions added: their defaults fill in."""
    rows = [_upgraded(row) for row in rows]
    for i, row in enumerate(rows):
        missing = [c for c in COLUMNS if c not in row]
        extra = [k for k in row if k not in DOCS]
        if missing or extra:
            raise SchemaError(f"row {i}: missing columns {missing}, unknown columns {extra}")
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _upgraded(row: dict) -> dict:
    """row with the ADDED_IN defaults of every version newer than its own schema_version."""
    version = row.get("schema_version")
    if not isinstance(version, int) or version >= SCHEMA_VERSION:
        return row
    added = {k: v for since, cols in ADDED_IN.items() if since > version for k, v in cols.items()}
    return {**added, **row}


def check_table(table: pa.Table, source: str = "table") -> pa.Table:
    """Validate a table read from disk against this schema version and cast it to SCHEMA."""
    if "schema_version" in table.column_names and table.num_rows:
        newest = max(v for v in table.column("schema_version").to_pylist() if v is not None)
        if newest > SCHEMA_VERSION:
            raise SchemaError(
                f"{source}: schema_version {newest} is newer than this reader's {SCHEMA_VERSION}; "
                "upgrade scaling-orchestrator to read it"
            )
    for version, defaults in ADDED_IN.items():  # an older table: the columns it predates
        for name, value in defaults.items():
            kind = SCHEMA.field(name).type
            if name not in table.column_names:
                table = table.append_column(name, pa.array([value] * table.num_rows, kind))
            elif value is not None:  # a folder of old and new files read as one dataset: nulls in old rows
                i = table.column_names.index(name)
                table = table.set_column(i, name, pc.fill_null(table.column(i).cast(kind), value))
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise SchemaError(f"{source}: missing columns {missing}")
    return table.select(list(COLUMNS)).cast(SCHEMA)
