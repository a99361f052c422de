"""`scaling`: plan, prepare, run, status, fit, report, predict, select, next, demo.

Ray loads only for the commands that run trials (run, demo): the execution layer is imported
when they run, so `scaling plan`, `status`, `fit` and `next` never load it. Expected failures
(a bad spec, a missing file, a bad table) print one line, `scaling: error: ...`, on stderr and
exit 2; a run with failed trials exits 1.
"""

from __future__ import annotations

import argparse
import gc
import sys

from scaling_orchestrator.cli.commands import COMMANDS


class CliError(Exception):
    """An expected failure: the message is the whole story, no traceback."""


def run() -> None:
    """The `scaling` command: main(), then the process ends with its exit code. The objects left
    are frozen first, so the interpreter's last garbage collection does not walk them all once
    more (0.2 s of a `scaling fit` on 1,000 trials, against 0.07 s frozen)."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command(argv))
        args = parser.parse_args(argv)
        return HANDLERS[args.command](args)
    except SystemExit as e:  # argparse: --help, or a usage error it already printed
        return e.code if isinstance(e.code, int) else 2
    except (CliError, ValueError, OSError) as e:  # SpecError is a ValueError
        print(f"scaling: error: {_one_line(e)}", file=sys.stderr)
        return 2


# A command's own module loads when it is the command: `scaling fit` imports neither the
# orchestrator nor the other commands' modules (1.1 s of imports against 1.8 s).
def _prepare():
    from scaling_orchestrator.cli import prepare  # loads when it is the command (see above)

    return prepare


def _analysis():
    from scaling_orchestrator.cli import analysis  # loads when it is the command (see above)

    return analysis


def _selection():
    from scaling_orchestrator.cli import selection  # loads when it is the command (see above)

    return selection


def _export():
    from scaling_orchestrator.cli import export  # loads when it is the command (see above)

    return export


def _demo():
    from scaling_orchestrator.cli import demo  # loads when it is the command (see above)

    return demo


# Commands whose parser their own module builds (the rest are listed in --help by name).
PARSERS = {
    "prepare": (_prepare, "add_prepare_parser"),
    "fit": (_analysis, "add_fit_parser"),
    "report": (_analysis, "add_report_parser"),
    "predict": (_analysis, "add_predict_parser"),
    "select": (_selection, "add_select_parser"),
    "export": (_export, "add_parser"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; the PARSERS commands' own parsers come from their modules when they are
    the command (listed by name otherwise)."""
    parser = argparse.ArgumentParser(prog="scaling", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help=COMMANDS["plan"], description=COMMANDS["plan"])
    p.add_argument("spec", metavar="SPEC", help="sweep spec (YAML)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")

    _module_parser(sub, "prepare", command)

    p = sub.add_parser("run", help=COMMANDS["run"], description=COMMANDS["run"])
    p.add_argument("spec", metavar="SPEC", help="sweep spec (YAML)")
    p.add_argument("--results", metavar="DIR", help="results directory (default: the spec's storage)")
    p.add_argument(
        "--address", metavar="ADDR", help="Ray cluster address (default: start or find a local one)"
    )
    p.add_argument(
        "--max-concurrent",
        metavar="N",
        type=_positive_int,
        help="trials at a time (default: the spec's, else sized from the cluster)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.add_argument(
        "--only",
        choices=("hparams", "scaling"),
        help="run only the spec's hparams search, or only its scaling grid (default: both, search first)",
    )

    p = sub.add_parser("status", help=COMMANDS["status"], description=COMMANDS["status"])
    p.add_argument("results", metavar="DIR", help="results directory")
    p.add_argument("--spec", metavar="SPEC", help="sweep spec, to list the trials not started too")

    for name in ("fit", "report", "predict", "select", "export"):
        _module_parser(sub, name, command)

    p = sub.add_parser("next", help=COMMANDS["next"], description=COMMANDS["next"])
    p.add_argument("results", metavar="RESULTS", help="results directory of a study")
    p.add_argument(
        "--target-flops",
        type=_positive_float,
        required=True,
        metavar="C",
        help="the budget whose N* the next trials pin down; above every budget run",
    )
    p.add_argument(
        "--budget-flops",
        type=_positive_float,
        required=True,
        metavar="B",
        help="FLOPs the next trials may spend",
    )
    p.add_argument("--out", metavar="PLAN.yaml", help="write the spec here (default: stdout)")
    p.add_argument(
        "--tolerance",
        type=_factor,
        default=1.25,
        metavar="X",
        help="N*'s 95%% interval within x/÷ X ends the study (default 1.25)",
    )
    p.add_argument("--law", default="chinchilla", help="law form (default chinchilla)")
    p.add_argument(
        "--bootstrap",
        type=_positive_int,
        default=200,
        metavar="N",
        help="bootstrap resamples of the fit (default 200)",
    )
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("demo", help=COMMANDS["demo"], description=COMMANDS["demo"])
    p.add_argument(
        "--results", metavar="DIR", help="results directory (default: results/demo, or results/demo-branches)"
    )
    p.add_argument(
        "--design",
        choices=("grid", "branches"),
        default="grid",
        help="grid: a run from scratch per point (examples/demo.yaml); branches: constant-LR "
        "trunks with cooldown branches (examples/branches.yaml)",
    )
    return parser


def _module_parser(sub, name: str, command: str | None) -> None:
    """The command's real parser when it is the command, else its name and help for --help."""
    if name == command:
        module, builder = PARSERS[name]
        getattr(module(), builder)(sub)
    else:
        sub.add_parser(name, help=COMMANDS[name], add_help=False)


def cmd_plan(args) -> int:
    plan = _load_plan(args.spec)
    print(plan.to_json() if args.json else plan.render())
    return 0


def cmd_run(args) -> int:
    plan = _load_plan(args.spec, prepare_on=args.address or "")
    sweep, only = plan.sweep, getattr(args, "only", None)
    results = args.results or sweep.storage
    if only == "hparams" and sweep.hparams is None:
        raise CliError(f"--only hparams: {args.spec} has no hparams section")
    if only == "scaling" and not plan.trials:
        raise CliError(f"--only scaling: {args.spec} has no budgets_flops, so no scaling grid")
    failed = _run_search(plan, results, args) if sweep.hparams and only != "scaling" else 0
    if plan.trials and only != "hparams":
        failed += _run_grid(plan, results, args)
    return 1 if failed else 0


def _run_search(plan, results: str, args) -> int:
    """The hparam search, before the grid: a grid whose lr comes from its fit needs it first."""
    # the execution layer (Ray) loads only for the commands that run trials
    from scaling_orchestrator.orchestrator.execution.search import run_search

    sweep = plan.sweep
    print(
        f"scaling: hparam search of {sweep.name}, {sweep.hparams.trials_per_size} trials at each of "
        f"{len(plan.hparam_trials)} sizes -> {results}",
        flush=True,
    )
    summary = run_search(
        plan,
        results,
        address=args.address,
        progress=not args.no_progress,
        max_concurrent_trials=args.max_concurrent,
    )
    print(summary)  # its last lines: each failed trial's reason and log
    return len(summary.failed)


def _run_grid(plan, results: str, args) -> int:
    # the execution layer (Ray) loads only for the commands that run trials
    from scaling_orchestrator.orchestrator.execution.run import run_plan

    print(f"scaling: {len(plan.trials)} trials of {plan.sweep.name} -> {results}", flush=True)
    summary = run_plan(
        plan,
        results,
        address=args.address,
        max_concurrent_trials=args.max_concurrent,
        progress=not args.no_progress,
    )
    print(
        f"scaling: {len(summary.completed)} completed, {len(summary.skipped)} already done, "
        f"{len(summary.diverged)} diverged, {len(summary.failed)} failed -> {summary.results_dir}"
    )
    for failure in summary.failures:  # failed: <trial_id>: <reason> (log: <path>)
        print(f"  {failure}")
    return len(summary.failed)


def cmd_status(args) -> int:
    from scaling_orchestrator.orchestrator.store.status import status_text  # loads when it runs

    trials = list(_load_plan(args.spec).trials) if args.spec else None
    print(status_text(args.results, trials))
    return 0


def cmd_next(args) -> int:
    from scaling_orchestrator.orchestrator.designs.next_trials import run_next  # loads when it runs

    return run_next(args)


def _handler(module, function: str):
    """A command whose handler is <function> of the module module() loads."""
    return lambda args: getattr(module(), function)(args)


HANDLERS = {
    "plan": cmd_plan,
    "prepare": _handler(_prepare, "cmd_prepare"),
    "run": cmd_run,
    "status": cmd_status,
    "fit": _handler(_analysis, "run_fit"),
    "report": _handler(_analysis, "run_report"),
    "predict": _handler(_analysis, "run_predict"),
    "select": _handler(_selection, "run_select"),
    "next": cmd_next,
    "demo": _handler(_demo, "main"),
    "export": _handler(_export, "run"),
}


def _load_plan(spec_path: str, prepare_on: str | None = None):
    """The spec's plan; prepare_on (a Ray address, "" for local) prepares its corpus first."""
    # the orchestrator loads for the commands that read a spec
    from scaling_orchestrator.orchestrator.designs import make_plan
    from scaling_orchestrator.orchestrator.spec.sweep import load_sweep

    sweep = load_sweep(spec_path)
    if prepare_on is not None:
        _prepare().ensure_prepared(sweep, prepare_on or None)
    return make_plan(sweep)


def _command(argv: list[str]) -> str | None:
    """The subcommand: the first argument that is not an option (the parser has no top-level options
    that take a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite FLOP count > 0")
    return value


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a factor > 1 (1.25: within x/÷1.25)")
    return value


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    return " ".join(text.split())
