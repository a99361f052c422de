"""A batch of independent fits on two cores: halves in a forked child, the same fits as one
process, a failed child's half recomputed, no fork beside another thread."""

import os
import threading
import time

import numpy as np
import pytest
from conftest import missing

from scaling_orchestrator.analysis.laws import engine
from scaling_orchestrator.analysis.laws.cores import HALVES, Later, can_fork, in_two
from scaling_orchestrator.analysis.laws.forms.chinchilla import CHINCHILLA_GRID
from scaling_orchestrator.analysis.laws.registry import law_form

CHINCHILLA = law_form("chinchilla")
pytestmark = pytest.mark.slow  # forks processes


@pytest.fixture
def forking():
    if not can_fork():
        missing("no fork here (macOS, one usable core or another thread alive)")


def test_the_second_half_is_computed_by_a_child(forking):
    parent = os.getpid()
    even, odd = in_two(lambda part: (np.array(os.getpid()), np.arange(10.0)[part], np.eye(2)[part]))
    assert even[0] == parent and odd[0] != parent
    np.testing.assert_array_equal(even[1], [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(odd[1], [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(odd[2], [[0.0, 1.0]])


def test_a_failed_child_half_is_recomputed_here(forking):
    parent = os.getpid()

    def work(part):
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return (np.arange(6)[part],)

    even, odd = in_two(work)
    np.testing.assert_array_equal(even[0], [0, 2, 4])
    np.testing.assert_array_equal(odd[0], [1, 3, 5])


def test_no_fork_while_another_thread_runs(forking):
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not can_fork()
    finally:
        stop.set()
        worker.join()
    assert can_fork()


def test_a_batch_in_two_processes_fits_as_one(forking):
    """Chinchilla's law with 1% noise: the screen's 4500 starts, 30 steps, end where they end in
    one process (each start in its place; a step's rounding differs with the BLAS summation
    order for a different number of rows, which 30 steps may grow on a rare start), and the fit
    reaches the same optimum."""
    rng = np.random.default_rng(0)
    N = np.repeat(np.logspace(7, 10, 16), 16)
    D = np.tile(np.logspace(9, 12, 16), 16)
    L = (1.7 + 400 / N**0.34 + 400 / D**0.28) * np.exp(rng.normal(0, 0.01, N.size))
    cols = CHINCHILLA.columns(N, D, L)
    starts = np.asarray(CHINCHILLA.starts(cols), float)
    assert len(starts) == len(CHINCHILLA_GRID) and len(starts) * len(cols) >= engine.SPLIT_TERMS
    split = engine.run_batch(CHINCHILLA.objective(cols), starts, None, 2, 30)
    one = engine.run_batch(CHINCHILLA.objective(cols), starts, None, 1, 30)
    for part in HALVES:
        assert np.mean(np.isclose(split.f[part], one.f[part], rtol=1e-9, atol=0)) > 0.99
    # a rare start takes another path in 30 steps: 1 of 4500 on a CPU with AVX-512
    assert np.sum(~np.isclose(split.f, one.f, rtol=1e-4, atol=0)) <= len(starts) // 1000
    two_cores, one_core = CHINCHILLA.fit(N, D, L, threads=2), CHINCHILLA.fit(N, D, L, threads=1)
    for name in CHINCHILLA.constants:
        assert getattr(two_cores, name) == pytest.approx(getattr(one_core, name), rel=1e-7)


def test_a_child_whose_result_is_dropped_leaves_and_never_runs_the_parents_code(forking, tmp_path):
    """The parent drops a Later before its result (an error on its side): the child's send
    fails on the closed pipe, and it leaves without returning into the caller's code."""
    marker = tmp_path / "ran-on"

    def work():
        time.sleep(0.3)  # the parent is gone from the pipe by now
        return (np.zeros(100_000),)  # more than a pipe holds: the write meets the closed end

    later = Later(work)
    pid = later.pid
    del later  # the parent moves on without the result
    marker.write_text(str(os.getpid()))  # only the parent gets here
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            break
        if done:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the child did not leave")
    assert marker.read_text() == str(os.getpid())
