"""Shared fixtures. The token cache goes to a per-session temporary folder: tests never write
to the user's home cache (SCALING_CACHE is pointed there for the whole session)."""

from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference-data"


@pytest.fixture(scope="session", autouse=True)
def token_cache_dir(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("token-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALING_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def reference_data() -> Path:
    if not REFERENCE_DATA.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DATA}; "
                    "../shared/reference-data/README.md says where each file comes from")
    return REFERENCE_DATA


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
