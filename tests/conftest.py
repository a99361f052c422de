"""Shared fixtures and the order tests run in.

- The token cache goes to a per-session temporary folder: tests never write to the user's home
  cache (SCALING_CACHE is pointed there for the whole session).
- One local Ray for the whole session (`local_ray`): the tests that use it run last, after every
  other test, so Ray starts once, and a test that starts Ray in this process for itself (a
  `ray.cluster_utils.Cluster`, a local Ray of another size, the CLI's own) never meets it.
- Reference data (`reference_data`, ../shared/reference-data beside the checkout) and a headless
  Chromium (`chromium`): a test that lacks one skips, saying why; under CI=true, where both are
  installed, the absence fails it instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = ROOT.parent / "shared" / "reference-data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> NoReturn:
    """Skip the test for want of `what`; under CI=true fail it: CI provides everything."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: a missing input is a failure, not a skip)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session", autouse=True)
def token_cache_dir(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("token-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALING_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def reference_data() -> Callable[..., Path]:
    """reference_data("epoch_chinchilla_besiroglu2024", "svg_extracted_data.csv") -> the file's
    path in the reference-data folder; the test skips (fails under CI=true) where it is absent."""

    def path(*parts: str) -> Path:
        found = REFERENCE_DATA.joinpath(*parts)
        if not found.exists():
            missing(f"reference data absent: {found} (../shared/reference-data beside the "
                    "checkout; its README.md says where each file comes from)")
        return found

    return path


@pytest.fixture(scope="session")
def epoch_csv(reference_data) -> Path:
    """Epoch's 245 Chinchilla points (Besiroglu et al. 2024), the fits' common reference."""
    return reference_data("epoch_chinchilla_besiroglu2024", "svg_extracted_data.csv")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless browser that loads report.html; skips (fails under CI=true) without one."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium not installed (apt-get install -y chromium); .ci/run installs it")
    return found


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray of 2 logical CPUs, started once for the session by the first test that asks
    for it and shut down at the end (pytest_collection_modifyitems runs those tests last).

    2 CPUs whatever the machine, as on a 2-core laptop: 2 one-thread trials at a time, or one
    TorchTrainer worker beside its 0.01-CPU driver. test_ddp's 2 gloo workers plus their driver
    need 3 (in 2 they and the driver's 0.01 never fit; a shared 3 would run 3 in-process
    trials at a time on 2 cores), so that test starts a Ray of its own and shuts it down; it
    runs before this one starts. address="local": a fresh instance even where $RAY_ADDRESS
    names a running cluster."""
    import ray  # imported here: collecting the tests that never start Ray need not load it

    from scaling_orchestrator.orchestrator.execution.tuner import start_local_ray

    start_local_ray(num_cpus=2, address="local")
    yield
    ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the session's Ray last, each group in its collected order (a stable sort;
    trylast: after any plugin that reorders). Module-scoped fixtures built on `local_ray`
    move with their tests, so each is still set up once."""
    items.sort(key=lambda item: "local_ray" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def pydoc_bytes(token_cache_dir):
    """The stdlib help topics as byte tokens (vocab 256): ~417k train, ~49k val tokens."""
    from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data

    return prepare_data(DataSpec(corpus="pydoc", tokenizer="byte", cache_dir=str(token_cache_dir)))


@pytest.fixture(scope="session")
def pydoc_bpe(token_cache_dir):
    """The stdlib help topics with a 512-token byte-level BPE (~192k train tokens)."""
    from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data

    return prepare_data(
        DataSpec(corpus="pydoc", tokenizer="bpe", vocab_size=512, cache_dir=str(token_cache_dir))
    )
