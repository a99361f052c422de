"""A batch of independent fits on two cores: its second half in a forked child process.

The batched L-BFGS (laws/lbfgs.py) refits thousands of independent problems at once (the 4500
starts of a fit, the 1000 resamples of a bootstrap). Splitting each objective call across two
threads gained about 10% (numpy gives the GIL back only inside each kernel, and a kernel on a
cache-sized block is short); splitting the problems across two processes halves the wall
time: the 1,000-trial folder's 1000 resamples, 1.44 s on one core, 0.71 s in two halves.
Each problem's result does not depend on which others share its batch, up to the BLAS
kernel's summation order for a different number of rows (1e-7 relative in the refitted
constants, well inside the fit's tolerances).

A child is forked only where that is safe and useful: a POSIX system other than macOS (its
BLAS does not survive a fork), at least two usable cores, and no other Python thread alive
(a Ray driver, a notebook's kernel threads: there the halves run on threads as before). The
child returns its half's arrays through a pipe (numpy's format, no pickle) and leaves with
os._exit (no atexit handler, no buffered output of the parent's written twice); if it fails,
the parent computes that half itself.
"""

from __future__ import annotations

import io
import os
import sys
import threading

import numpy as np


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether a child may be forked here: POSIX but not macOS, >= 2 cores, one Python thread."""
    return (hasattr(os, "fork") and sys.platform != "darwin" and usable_cores() >= 2
            and threading.active_count() == 1)


# The two halves of a batch: its even and its odd rows (a batch sorted by promise, cut in the
# middle, would give one half every start that crawls).
HALVES = (slice(0, None, 2), slice(1, None, 2))


def in_two(work) -> list:
    """[work(HALVES[0]), work(HALVES[1])], each a tuple of numpy arrays, the second computed by a
    forked child (Later) while this process computes the first."""
    first, second = HALVES
    theirs = Later(lambda: work(second))
    try:
        mine = work(first)
    finally:
        result = theirs.result()
    return [mine, result]


class Later:
    """work() (a tuple of numpy arrays) computed by a forked child while this process goes on,
    where can_fork(); result() waits for it. Without a fork, or if the child failed, result()
    computes it here."""

    def __init__(self, work):
        self.work, self.pid, self.pipe = work, None, None
        if not can_fork():
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave whatever happens, never returning
            try:  # into the parent's code (a parent gone or done with it closes the pipe)
                os.close(read_end)
                try:
                    payload = to_bytes(work())
                except BaseException:  # noqa: BLE001 - the parent computes it instead
                    payload = b""
                with os.fdopen(write_end, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(0)
        os.close(write_end)
        self.pid, self.pipe = pid, os.fdopen(read_end, "rb")

    def __del__(self):
        """A result never asked for: close the pipe (the child leaves) and reap it if it has."""
        if getattr(self, "pid", None) is not None:
            self.pipe.close()
            os.waitpid(self.pid, os.WNOHANG)

    def result(self) -> tuple:
        if self.pid is None:
            return self.work()
        with self.pipe:
            payload = self.pipe.read()
        os.waitpid(self.pid, 0)
        self.pid = None
        return from_bytes(payload) if payload else self.work()


def to_bytes(arrays) -> bytes:
    """The arrays in numpy's .npy format, one after another (plain dtypes only: no pickle)."""
    out = io.BytesIO()
    for array in arrays:
        np.save(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def from_bytes(payload: bytes) -> tuple:
    source, arrays = io.BytesIO(payload), []
    while source.tell() < len(payload):
        arrays.append(np.load(source, allow_pickle=False))
    return tuple(arrays)
