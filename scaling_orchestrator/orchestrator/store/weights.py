"""Every finished trial keeps its model: `_weights/<trial_id>/` in the results folder holds
`model.safetensors` and `config.json` (models/weights.py), unless `train.keep_weights: none`.

Written from the trial's final checkpoint once its final row is durable, by the trial's one
writer (its rank-0 worker). Atomically: the files go to a hidden folder beside the target
(`_weights/.<trial_id>.tmp-<pid>-<hex>`, so on the same file system) and one rename makes it
`_weights/<trial_id>`, so a reader sees the whole model or none; a retry that finds an older copy
swaps it out the same way. On an object store (no directory rename) the weights are copied
first and config.json last: a folder without config.json is incomplete.

The simulate backend trains nothing, so it keeps nothing, and the trial's metadata says so. A
diverged trial keeps nothing (its checkpoint is not written: no broken model is kept).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid

import pyarrow.fs as pafs

from scaling_orchestrator.orchestrator.store.results import Store

WEIGHTS_DIR = "_weights"
NOT_KEPT_SIMULATED = "none: the simulate backend trains no model"

NOT_KEPT_TRAINER = ("none: a trainer of the user's own (backend: command | python) saves its own "
                    "checkpoints; train.keep_weights applies to the built-in loop")


def weights_dir(store: Store, trial_id: str) -> str:
    return store.path(WEIGHTS_DIR, trial_id)


def keep_final_weights(spec, store: Store, checkpoint_dir: str | None) -> str | None:
    """Write the finished trial's weights from its final checkpoint; record where in its metadata
    (`weights`, `weights_bytes`). Returns the folder, or None when nothing is kept."""
    if spec.train.keep_weights == "none":
        store.update_meta(spec.trial_id, weights="none: train.keep_weights is none")
        return None
    if spec.simulate:
        store.update_meta(spec.trial_id, weights=NOT_KEPT_SIMULATED)
        return None
    if spec.trainer:  # its checkpoint is in the trainer's own format: nothing here can read it
        store.update_meta(spec.trial_id, weights=NOT_KEPT_TRAINER)
        return None
    if not checkpoint_dir:
        return None
    # torch loads in a trial's process, where the model was trained (the driver needs none)
    from scaling_orchestrator.models.weights import checkpoint_state, write_weights

    with tempfile.TemporaryDirectory(prefix="scaling-weights-") as tmp:
        size = write_weights(
            tmp,
            checkpoint_state(checkpoint_dir),
            spec.shape,
            trial_id=spec.trial_id,
            sweep=spec.sweep,
            size_label=spec.size_label,
            tokenizer=dataclasses.asdict(spec.data),  # the reference: corpus, tokenizer, vocab, split
        )
        target = publish_folder(store, tmp, weights_dir(store, spec.trial_id))
    store.update_meta(spec.trial_id, weights=target, weights_bytes=size)
    return target


def publish_folder(store: Store, local_dir: str, target: str) -> str:
    """Copy local_dir to target as one step (module doc); returns target."""
    parent, name = target.rsplit("/", 1)
    store.fs.create_dir(parent, recursive=True)
    if not store.local:
        files = sorted(os.listdir(local_dir), key=lambda f: f == "config.json")  # config.json last
        for file in files:
            with open(os.path.join(local_dir, file), "rb") as f:
                store.write_bytes(f"{target}/{file}", f.read())
        return target
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging, old = f"{parent}/.{name}.tmp-{tag}", f"{parent}/.{name}.old-{tag}"
    shutil.copytree(local_dir, staging)
    if os.path.exists(target):  # a retry's second copy: swap, then drop the first
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def kept_weights(store: Store) -> dict[str, int]:
    """{trial_id: bytes of model.safetensors} for every complete kept model in the folder."""
    base = store.path(WEIGHTS_DIR)
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (FileNotFoundError, OSError):
        return {}
    files = {i.path[len(base) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}
    return {
        path.split("/")[0]: size
        for path, size in files.items()
        if path.endswith("/model.safetensors") and not path.startswith(".")
        and f"{path.split('/')[0]}/config.json" in files
    }


def weights_lines(store: Store) -> list[str]:
    """`scaling status`'s line on the kept models: how many, where, how big."""
    kept = kept_weights(store)
    if not kept:
        return []
    return [f"weights: {len(kept)} models kept in {store.path(WEIGHTS_DIR)}/<trial_id>/ "
            f"({sum(kept.values()) / 1e6:.1f} MB); scaling export {store.uri} TRIAL_ID --out DIR"]


__all__ = ["WEIGHTS_DIR", "keep_final_weights", "kept_weights", "weights_dir", "weights_lines"]
