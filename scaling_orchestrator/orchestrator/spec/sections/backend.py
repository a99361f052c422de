"""The spec's `backend:` section: what trains a trial.

    backend: torch                      # the built-in loop on GPT(shape) (the default)
    backend: simulate                   # losses drawn from the `simulate:` section's law
    backend: {kind: command, command: "python train.py --layers {n_layer} --width {d_model}"}
    backend: {kind: python, function: "my_lab.trainer:train"}

A command names the trial's values in `{field}` templates (str.format syntax, so `{lr:.3g}`
works); TEMPLATE_FIELDS lists them. An unknown field is refused here, at plan time, in one line
naming it, rather than in every trial's first second on the cluster. A function is checked for
its "package.module:function" form only: it is imported where trials run (spec/user_code.py),
whose Python path may differ from the planner's.

Parsed, the section is None for torch and simulate (the `simulate:` section says which) and a
dict {"kind", "command" | "function", "spec_dir"} otherwise: JSON-plain, so it rides in the
TrialSpec to the Ray workers and is hashed into the trial id (another trainer, another result).
`spec_dir` is the folder of the spec file, the `{spec_dir}` field: a command runs in a working
folder of its own, so `python {spec_dir}/external/train.py` finds a trainer kept beside the spec.
"""

from __future__ import annotations

import dataclasses
import os
import string

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.config import TrainConfig
from scaling_orchestrator.orchestrator.spec.sections.counts import FUNCTION
from scaling_orchestrator.orchestrator.spec.trial import Resources
from scaling_orchestrator.orchestrator.spec.validate import SpecError, fail, mapping

KINDS = ("torch", "simulate", "command", "python")
# Fields the runner fills in besides every ModelShape and TrainConfig field (backends/contract.py
# template_values computes each): identity, counts, the contract's paths, the process count.
RUN_FIELDS = (
    "trial_id", "sweep", "size_label", "group", "tokens", "steps", "budget_flops", "params",
    "flops_per_token", "n_kv_heads", "trial_json", "metrics", "checkpoint_dir", "start_from",
    "nproc", "python", "spec_dir",
)


def template_fields() -> tuple[str, ...]:
    """Every `{field}` a command may name: the shape's and recipe's fields, then RUN_FIELDS."""
    names = [f.name for cls in (ModelShape, TrainConfig) for f in dataclasses.fields(cls)]
    return tuple(dict.fromkeys([*names, *RUN_FIELDS]))


def parse_backend(raw, source: str = "<dict>", *, simulate: bool = False) -> dict | None:
    """The `backend:` section, checked (module doc). simulate: the spec has a `simulate:` section."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"kind": raw}
    raw = mapping(raw, "backend", ("kind", "command", "function"))
    kind = raw.get("kind")
    if kind not in KINDS:
        fail("backend.kind", kind, "one of " + ", ".join(KINDS))
    if kind == "simulate" and not simulate:
        raise SpecError("backend: simulate needs the simulate: section (the law its losses are drawn from)")
    if kind != "simulate" and simulate:
        raise SpecError(f"backend: {kind} with a simulate: section; drop one (simulate draws losses from "
                        "its law, the other trains)")
    needs = {"command": "command", "python": "function"}.get(kind)
    extra = sorted(set(raw) - {"kind", needs})
    if extra:
        raise SpecError(f"backend.{extra[0]}: not a field of backend kind {kind}"
                        + (f"; it takes {needs}" if needs else ""))
    if needs is None:
        return None
    value = raw.get(needs)
    if not isinstance(value, str) or not value.strip():
        fail(f"backend.{needs}", value, "a non-empty string")
    if kind == "command":
        check_template(value, "backend.command")
    elif not FUNCTION.fullmatch(value):
        fail("backend.function", value, '"package.module:function"')
    folder = os.path.dirname(os.path.abspath(source)) if source != "<dict>" else os.getcwd()
    return {"kind": kind, needs: value, "spec_dir": folder}


def check_template(command: str, path: str) -> None:
    """Every `{field}` of `command` one the runner fills in; a SpecError naming the first that is not."""
    allowed = template_fields()
    try:
        parsed = list(string.Formatter().parse(command))
    except ValueError as e:
        raise SpecError(f"{path}: {e} in {command!r} (a literal brace is written {{{{ or }}}})") from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name not in allowed:
            raise SpecError(f"{path}: unknown field {{{name}}}; allowed: {', '.join(allowed)}")


def trial_resources(trial, res: Resources) -> Resources:
    """What a trial of this backend reserves. A command is started once, on one node, with every
    GPU of its trial visible (`{nproc}` of them, for torchrun): gpus_per_worker x num_workers
    becomes one in-process bundle of that many GPUs and CPUs, which Ray places on a single node
    (plan/resources.check_fits refuses it when no node is that large). A multi-node trainer
    (one command per node) is out of scope. Other backends keep `res`."""
    if not trial.trainer or trial.trainer["kind"] != "command" or res.num_workers == 0:
        return res
    k = res.num_workers
    return dataclasses.replace(
        res, num_workers=0, cpus_per_worker=res.cpus_per_worker * k, gpus_per_worker=res.gpus_per_worker * k,
        resources_per_worker={key: v * k for key, v in res.resources_per_worker.items()},
        memory_per_worker_gb=res.memory_per_worker_gb * k)
