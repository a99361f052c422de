"""The command backend: a trial is a process of the user's own trainer, read as it writes.

    backend: {kind: command, command: "python {spec_dir}/external/train.py --layers {n_layer}"}

The command runs in a working folder of its own (a shell command line under backends/guard.py,
which ends it should the trial's process die, in a process group of their own), with the
trial's values as template fields and SCALING_* variables (backends/contract.py). While it
runs, its metrics file is read every POLL_SECONDS: each new line becomes a Measurement handed
to on_eval, which writes the row, keeps the checkpoint and reports to Tune (execution/worker.py).
While on_eval copies $SCALING_CHECKPOINT_DIR the process group is paused (SIGSTOP), so the copy
is the save the trainer made before writing that line, not a half-written next one: a trainer
saves, then appends its line.

How it ends (the trainer's exit status):
  0, last line at the trial's tokens   the final row
  0 short of them, or a bad line       ContractError: the trial fails with that reason, once
  anything else (a crash, a kill)      TrainerCrashed: retried up to max_failures; the retry finds
                                       its last kept save in $SCALING_CHECKPOINT_DIR
  Tune stops it (ASHA, at a report)    the process group gets SIGTERM, then SIGKILL after
                                       GRACE_SECONDS; the row already written is the last one
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

from scaling_orchestrator.orchestrator.backends import guard, metrics
from scaling_orchestrator.orchestrator.backends.contract import Paths, environment, render, template_values

POLL_SECONDS = 0.2
GRACE_SECONDS = 10.0
OUTPUT_FILE = "output.log"
TAIL_LINES = 30


def run_command(spec, *, paths: Paths, on_eval, resume_from: str | None = None, gpu_ids=None,
                nproc: int = 1, log=lambda line: None, on_curve=None):
    """Run the trial's command to its end (module doc); returns the final Measurement.
    on_curve: the sink of its curve points (metrics.CurveBuffer), None to drop them."""
    if resume_from and os.path.abspath(resume_from) != os.path.abspath(paths.checkpoint_dir):
        shutil.copytree(resume_from, paths.checkpoint_dir, dirs_exist_ok=True)
    os.makedirs(paths.checkpoint_dir, exist_ok=True)
    os.makedirs(paths.workdir, exist_ok=True)
    values = template_values(spec, paths, nproc)
    line = render(spec.trainer["command"], values)
    log(f"command: {line}")
    output = os.path.join(paths.workdir, OUTPUT_FILE)
    with open(output, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-S", guard.__file__, str(os.getpid()), line],
                                cwd=paths.workdir, stdout=out, stderr=subprocess.STDOUT,
                                env=environment(values, paths, gpu_ids), start_new_session=True)
    try:
        last = _follow(spec, proc, metrics.MetricsReader(paths.metrics), on_eval, paths.checkpoint_dir, log,
                       metrics.CurveBuffer(spec, on_curve))
    finally:
        stop_group(proc)
    return _outcome(spec, proc.returncode, last, output)


def _follow(spec, proc, reader, on_eval, checkpoint_dir: str, log, curve):
    """Hand each new evaluation line to on_eval, and curve lines to curve, until the process
    exits; the last Measurement."""
    began, last = time.perf_counter(), None
    while True:
        done = proc.poll() is not None
        for record in reader.read(at_end=done):
            curve.add(record)
            if not metrics.is_evaluation(record):
                continue
            curve.flush()
            warning = metrics.params_warning(spec, record)
            if warning and last is None:
                log(f"warning: {warning}")
            last = metrics.to_measurement(spec, record, previous=last,
                                          wall_seconds=time.perf_counter() - began)
            with paused(proc):
                on_eval(last, checkpoint_dir if os.listdir(checkpoint_dir) else None)
        if done:
            curve.flush()
            return last
        time.sleep(POLL_SECONDS)


def _outcome(spec, code: int, last, output: str):
    tail = output_tail(output)
    where = f"; its output ends:\n{tail}" if tail else ""
    if code != 0:
        raise metrics.TrainerCrashed(f"trial {spec.trial_id}: the command exited with {_status(code)}{where}")
    if last is None:
        raise metrics.ContractError(
            f"trial {spec.trial_id}: the command exited 0 without a metrics line{where}")
    if last.status == "diverged":
        return metrics.finished(last)  # run_trainer writes its row final
    if not last.final:
        raise metrics.ContractError(f"trial {spec.trial_id}: the command exited 0 at {last.tokens:,} tokens, "
                                    f"short of the trial's {spec.train.total_tokens:,}{where}")
    return last


@contextmanager
def paused(proc):
    """The process group stopped (SIGSTOP) for the block, continued after; nothing if it exited."""
    stopped = _signal(proc, signal.SIGSTOP)
    try:
        yield
    finally:
        if stopped:
            _signal(proc, signal.SIGCONT)


def stop_group(proc, grace: float = GRACE_SECONDS) -> None:
    """End the command's process group: SIGTERM (and SIGCONT, were it paused), SIGKILL after
    `grace` seconds. Its children (torchrun's workers) go with it."""
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM)
        _signal(proc, signal.SIGCONT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal(proc, signal.SIGKILL)  # stragglers of a group whose leader exited
    proc.wait()


def _signal(proc, sig) -> bool:
    try:
        os.killpg(proc.pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _status(code: int) -> str:
    """A shell reports a child killed by signal n as 128 + n: both are named."""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        name = f"signal {signal.Signals(number).name}" if number else ""
    except ValueError:
        name = f"signal {number}"
    return name if code < 0 else f"status {code}" + (f" ({name})" if name else "")


def output_tail(path: str, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
