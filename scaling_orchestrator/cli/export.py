"""`scaling export RESULTS TRIAL_ID --out DIR`: a finished trial's kept model as a folder other
tools load (scaling_orchestrator.models.export), checked against our logits before it returns.

    scaling export results/demo 3f2a9c1e0b7d4a65 --out hf/d4
    -> hf/d4: huggingface llama, tokenizer bpe (1024 tokens); logits max |diff| 2.4e-07 on 128
       validation tokens

A results folder on object storage is read through a local copy of `_weights/<trial_id>/`.
"""

from __future__ import annotations

import os
import tempfile

import pyarrow.fs as pafs

from scaling_orchestrator.cli.commands import COMMANDS
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.weights import kept_weights, weights_dir

HELP = COMMANDS["export"]
TOLERANCE = 1e-4  # max |logit difference| an export must meet on the trial's validation tokens


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP)
    p.add_argument("results", metavar="RESULTS", help="results directory of a study")
    p.add_argument("trial_id", metavar="TRIAL_ID", help="a finished trial's id (scaling status lists them)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")


def run(args) -> int:
    store = Store(args.results, create=False)
    if args.trial_id not in kept_weights(store):
        meta = store.read_meta(args.trial_id)
        why = meta.get("weights") or "no finished run kept them"
        where = weights_dir(store, args.trial_id)
        raise ValueError(f"trial {args.trial_id}: no kept weights in {where} ({why})")
    with tempfile.TemporaryDirectory(prefix="scaling-export-") as tmp:
        folder = weights_dir(store, args.trial_id)
        if not store.local:
            local = pafs.LocalFileSystem()
            pafs.copy_files(folder, tmp, source_filesystem=store.fs, destination_filesystem=local)
            folder = tmp
        print(export_and_check(folder, args.out))
    return 0


def export_and_check(folder: str, out: str) -> str:
    """Export, then compare logits on the trial's validation tokens; the line that says so."""
    # torch (and transformers) load only for this command
    from scaling_orchestrator.models.export import export_model, logits_difference, validation_tokens

    written = export_model(folder, out)
    tokens = validation_tokens(folder)
    if tokens is None:
        return f"{os.path.abspath(out)}: {written['format']}; no validation tokens to check logits on"
    diff = logits_difference(folder, out, tokens)
    if not diff <= TOLERANCE:
        raise ValueError(f"{out}: exported logits differ from the trial's by {diff:.3g} (> {TOLERANCE:g})")
    return (f"{os.path.abspath(out)}: {written['format']}, tokenizer {written['tokenizer']}; logits max "
            f"|diff| {diff:.2g} on {tokens.shape[1]} validation tokens")


__all__ = ["add_parser", "run"]
